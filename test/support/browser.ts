import { type Browser, chromium } from "playwright-core";

/** Debian's Chromium; playwright-core drives it over CDP (no Playwright-downloaded browsers here). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/**
 * Headless Chromium. `chromium.launch` gives every launch a new temporary user-data-dir (removed
 * on close), so no profile state leaks between runs; each `browser.newContext()` is isolated too.
 * The caller must `await browser.close()` in afterAll/finally.
 */
export async function launchChromium(opts: { timeoutMs?: number } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: opts.timeoutMs ?? 30_000,
  });
}
