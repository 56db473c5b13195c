import { mkdir } from "node:fs/promises";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/browser.ts";
import { poolEvent, poolSnapshot, sandboxSnapshot } from "../support/pool-fixtures.ts";
import { type EventsRelay, startEventsRelay } from "./fixtures/events-relay.ts";

// The open port links of each sandbox on the real page in headless Chromium, fed by the stand-in
// for the edge's /v1/events relay: port_link.created / port_link.revoked, expiry, a sandbox's end.

const ID = "sb.local.default.abcdefghij0123456789";
const WAIT = { timeout: 8000, interval: 50 };
const SNAPSHOT = poolSnapshot({
  region: "local",
  sandboxes: [
    sandboxSnapshot(ID, new Date().toISOString(), {
      pod: "pi-sandbox-1",
      name: "web",
      idleTimeoutSeconds: 3600,
    }),
  ],
});

let browser: Browser;
let relay: EventsRelay;

beforeAll(async () => {
  await mkdir("test-results", { recursive: true });
  relay = await startEventsRelay({ tokens: { "good-admin-token": "admin" }, snapshots: [SNAPSHOT] });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await relay?.close();
});

const link = (linkId: string, port: number, ttlMs: number, pub = false) =>
  relay.send(
    poolEvent(
      "port_link.created",
      { region: "local", tenant: "acme" },
      { sandboxId: ID, linkId, port, public: pub, expiresAt: new Date(Date.now() + ttlMs).toISOString() },
    ),
  );

describe("dashboard port links (headless Chromium)", () => {
  it("lists a sandbox's open links as they open; revoked, expired and the sandbox's end remove them", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page: Page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    try {
      const before = relay.streamsOpened;
      await page.goto(`${relay.url}/dashboard#token=good-admin-token`, { timeout: 10_000 });
      await relay.waitForStreams(before + 1);
      const row = page.locator(`[data-testid="sandbox-row"][data-sandbox-id="${ID}"]`);
      await expect.poll(() => row.count(), WAIT).toBe(1);
      expect((await row.getByTestId("sandbox-links").textContent())?.trim()).toBe("—");
      const ports = () =>
        row.getByTestId("sandbox-link").evaluateAll((els) => els.map((e) => e.getAttribute("data-port")));

      link("pl-aaaaaaaaaaaaaaaaaaaa", 8000, 3_600_000);
      link("pl-bbbbbbbbbbbbbbbbbbbb", 3000, 8_000, true);
      // Soonest to expire first.
      await expect.poll(ports, WAIT).toEqual(["3000", "8000"]);
      const text = await row.getByTestId("sandbox-links").textContent();
      expect(text).toMatch(/:3000 public, .+ left/);
      expect(text).toMatch(/:8000 private, .+ left/);
      await page.screenshot({ path: "test-results/dashboard-links.png" });

      // The public one expires with no event: the page drops it by itself.
      await expect.poll(ports, { ...WAIT, timeout: 20_000 }).toEqual(["8000"]);

      link("pl-cccccccccccccccccccc", 5173, 3_600_000);
      await expect.poll(ports, WAIT).toEqual(["8000", "5173"]);
      relay.send(
        poolEvent(
          "port_link.revoked",
          { region: "local", tenant: "acme" },
          { sandboxId: ID, linkId: "pl-aaaaaaaaaaaaaaaaaaaa", port: 8000 },
        ),
      );
      await expect.poll(ports, WAIT).toEqual(["5173"]);

      relay.send(poolEvent("sandbox.deleted", { region: "local", pod: "pi-sandbox-1" }, { sandboxId: ID }));
      await expect.poll(() => row.count(), WAIT).toBe(0);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
