import { mkdir } from "node:fs/promises";
import { build } from "esbuild";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DASHBOARD_SCRIPT } from "../../edge/dashboard/script.gen.ts";
import type { PoolEvent } from "../../shared/api.ts";
import { launchChromium } from "../support/browser.ts";
import { poolEvent, poolSnapshot } from "../support/pool-fixtures.ts";
import { type EventsRelay, type PageModule, startEventsRelay } from "./fixtures/events-relay.ts";

// The real page in real headless Chromium, fed by a stand-in for the edge's /v1/events relay.
// The lead adds the same checks against the real stack (edge + agents + devcluster).

const LOCAL = poolSnapshot({ region: "local" });
const TOKENS = { "good-admin-token": "admin", "old-token": "expired", "viewer-token": "no-admin" } as const;
const WAIT = { timeout: 8000, interval: 50 };
// Page-side expressions as strings: this file is typechecked without the DOM library.
const STORED_TOKEN = 'sessionStorage.getItem("pi-sandbox-dashboard-token")';

let browser: Browser;
let relay: EventsRelay;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  await mkdir("test-results", { recursive: true });
  relay = await startEventsRelay({ tokens: { ...TOKENS }, snapshots: [LOCAL] });
  browser = await launchChromium();
});

afterEach(async () => {
  relay.failWith = null;
  relay.refuse = false;
  relay.noPoolRoute = false;
  relay.unavailable.clear();
  relay.snapshots = new Map([["local", LOCAL]]);
  relay.dropStreams();
  for (const c of contexts.splice(0)) await c.close().catch(() => {});
});

afterAll(async () => {
  await browser?.close();
  await relay?.close();
});

async function open(hash: string, viewport = { width: 1280, height: 800 }, query = ""): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  (page as Page & { errors: string[] }).errors = errors;
  await page.goto(`${relay.url}/dashboard${query}${hash}`, { timeout: 10_000 });
  return page;
}
const pageErrors = (page: Page) => (page as Page & { errors: string[] }).errors;

const tile = (page: Page, pod: string) => page.locator(`[data-testid="pod-tile"][data-pod="${pod}"]`);
const stateOf = (page: Page, pod: string) => tile(page, pod).getAttribute("data-state");

function send(
  type: PoolEvent["type"],
  fields: Omit<Partial<PoolEvent>, "type">,
  data?: Record<string, unknown>,
) {
  relay.send(poolEvent(type, { region: "local", ...fields }, data));
}

async function openLive(): Promise<Page> {
  const before = relay.streamsOpened;
  const page = await open("#token=good-admin-token");
  await relay.waitForStreams(before + 1);
  await expect.poll(() => page.getByTestId("pod-tile").count(), WAIT).toBe(8);
  await expect
    .poll(() => page.getByTestId("connection-status").getAttribute("data-state"), WAIT)
    .toBe("live");
  return page;
}

describe("dashboard page (headless Chromium)", () => {
  it("loads with the token from the fragment, removes it from the address bar, and shows 8 ready pods", async () => {
    const before = relay.requests.length;
    const page = await openLive();
    expect(await page.locator('[data-testid="pod-tile"][data-state="ready"]').count()).toBe(8);
    expect(await page.getByTestId("count-ready").textContent()).toContain("8");
    expect(page.url()).not.toContain("token");
    expect(await page.evaluate(STORED_TOKEN)).toBe("good-admin-token");
    // The token went in the Authorization header, never in a URL.
    const mine = relay.requests.slice(before);
    const api = mine.filter((r) => r.url.startsWith("/v1/"));
    expect(api.map((r) => r.url)).toEqual(["/v1/pool", "/v1/events?region=local"]);
    expect(api.every((r) => r.authorization === "Bearer good-admin-token")).toBe(true);
    expect(mine.every((r) => !r.url.includes("token"))).toBe(true);
    expect(await page.getByRole("status").textContent()).toContain("Live");
    expect(pageErrors(page)).toEqual([]);
  });

  it("a tile turns leased (tenant + request id) on lease.acquired and returns to ready after lease.released", async () => {
    const page = await openLive();
    send(
      "lease.acquired",
      { pod: "pi-sandbox-3", requestId: "req-lease-1", tenant: "acme" },
      { leaseDurationSeconds: 45 },
    );
    await expect.poll(() => stateOf(page, "pi-sandbox-3"), WAIT).toBe("leased");
    const t = tile(page, "pi-sandbox-3");
    expect(await t.getByTestId("pod-tenant").textContent()).toBe("acme");
    expect(await t.getByTestId("pod-request").getAttribute("title")).toBe("req-lease-1");
    expect(await t.getAttribute("aria-label")).toContain("leased by acme");
    // The TTL counts down client-side, without new events.
    const ttl1 = Number((await t.getByTestId("pod-ttl").textContent())?.replace(/\D/g, ""));
    expect(ttl1).toBeGreaterThan(40);
    expect(ttl1).toBeLessThanOrEqual(45);
    await expect
      .poll(async () => Number((await t.getByTestId("pod-ttl").textContent())?.replace(/\D/g, "")), WAIT)
      .toBeLessThan(ttl1);
    expect(await page.getByTestId("total-acquisitions").textContent()).toBe("1");

    send("lease.released", { pod: "pi-sandbox-3", requestId: "req-lease-1", tenant: "acme" });
    await expect.poll(() => stateOf(page, "pi-sandbox-3"), WAIT).toBe("ready");
    expect(await t.getByTestId("pod-tenant").count()).toBe(0);
  });

  it("the queue shows a waiter when queue.entered arrives with the pool exhausted", async () => {
    const page = await openLive();
    for (let i = 0; i < 8; i++) {
      send(
        "lease.acquired",
        { pod: `pi-sandbox-${i}`, requestId: `busy-${i}`, tenant: "acme" },
        { leaseDurationSeconds: 45 },
      );
    }
    await expect
      .poll(() => page.locator('[data-testid="pod-tile"][data-state="leased"]').count(), WAIT)
      .toBe(8);
    send("queue.entered", { requestId: "waiting-1", tenant: "globex" }, { position: 1 });
    const waiter = page.locator('[data-testid="queue-waiter"][data-request-id="waiting-1"]');
    await waiter.waitFor({ timeout: 8000 });
    expect(await page.getByTestId("queue-depth").textContent()).toBe("1");
    expect(await waiter.textContent()).toContain("globex");
    // The wait so far grows while it waits.
    await expect
      .poll(async () => (await waiter.getByTestId("queue-waited").textContent()) ?? "", {
        timeout: 4000,
        interval: 100,
      })
      .toMatch(/^[1-9][\d.]* s$/);

    send("queue.timeout", { requestId: "waiting-1", tenant: "globex" });
    await expect.poll(() => page.getByTestId("queue-depth").textContent(), WAIT).toBe("0");
    expect(await page.getByTestId("total-queue-timeouts").textContent()).toBe("1");
  });

  it("a new execution appears in the timeline without a reload; then a screenshot", async () => {
    const page = await openLive();
    await page.evaluate("window.__sameDocument = true");
    send(
      "lease.acquired",
      { pod: "pi-sandbox-1", requestId: "req-exec-1", tenant: "acme" },
      { leaseDurationSeconds: 45, acquireMs: 4 },
    );
    send(
      "exec.started",
      { pod: "pi-sandbox-1", requestId: "req-exec-1", tenant: "acme" },
      { commandPreview: "python3 -c 'print(6*7)'" },
    );
    const row = page.locator('[data-testid="timeline-row"][data-request-id="req-exec-1"]');
    await row.waitFor({ timeout: 8000 });
    expect(await row.getAttribute("data-status")).toBe("running");
    send(
      "exec.finished",
      { pod: "pi-sandbox-1", requestId: "req-exec-1", tenant: "acme" },
      { exitCode: 0, durationMs: 84, queueMs: 0, timedOut: false },
    );
    await expect.poll(() => row.getAttribute("data-status"), WAIT).toBe("finished");
    const text = (await row.textContent()) ?? "";
    expect(text).toContain("python3 -c 'print(6*7)'");
    expect(text).toContain("acme");
    expect(text).toContain("pi-sandbox-1");
    expect(text).toContain("84 ms");
    expect(await row.getByTestId("timeline-exit").textContent()).toBe("0");
    expect(await page.evaluate("window.__sameDocument")).toBe(true);
    expect(await page.getByTestId("total-acquire-p50").textContent()).toBe("4 ms");

    // A busier moment for the screenshot: more leases, a failing command, a queue.
    send(
      "lease.acquired",
      { pod: "pi-sandbox-4", requestId: "req-7f3a9c21", tenant: "globex" },
      { leaseDurationSeconds: 45, acquireMs: 9 },
    );
    send(
      "exec.started",
      { pod: "pi-sandbox-4", requestId: "req-7f3a9c21", tenant: "globex" },
      { commandPreview: "npm test -- --run" },
    );
    send(
      "lease.acquired",
      { pod: "pi-sandbox-6", requestId: "req-c0ffee42", tenant: "initech" },
      { leaseDurationSeconds: 45, acquireMs: 6 },
    );
    send(
      "exec.started",
      { pod: "pi-sandbox-6", requestId: "req-c0ffee42", tenant: "initech" },
      { commandPreview: "cat /etc/passwd | wc -l" },
    );
    send(
      "exec.finished",
      { pod: "pi-sandbox-6", requestId: "req-c0ffee42", tenant: "initech" },
      { exitCode: 2, durationMs: 1530, queueMs: 120 },
    );
    send("lease.conflict", { pod: "pi-sandbox-2", requestId: "req-c0ffee42", tenant: "initech" });
    send("queue.entered", { requestId: "req-queued-01", tenant: "umbrella" });
    await expect.poll(() => page.getByTestId("timeline-row").count(), WAIT).toBe(3);
    await page.waitForTimeout(1200);
    await page.screenshot({ path: "test-results/dashboard.png", fullPage: true });
    expect(pageErrors(page)).toEqual([]);
  });

  it("opens with the executions the agent already knows (its snapshot's history), none flashing as new", async () => {
    const at = (ago: number) => new Date(Date.now() - ago).toISOString();
    relay.snapshots.set(
      "local",
      poolSnapshot({
        region: "local",
        executions: [
          {
            requestId: "ran-before-2",
            tenant: "globex",
            pod: "pi-sandbox-2",
            commandPreview: "make test",
            startedAt: at(5_000),
            finishedAt: at(3_000),
            exitCode: 2,
            timedOut: false,
            durationMs: 2_000,
            queueMs: 0,
          },
          {
            requestId: "ran-before-1",
            tenant: "acme",
            pod: "pi-sandbox-1",
            commandPreview: "ls -la",
            startedAt: at(60_000),
            finishedAt: at(59_900),
            exitCode: 0,
            timedOut: false,
            durationMs: 100,
            queueMs: 3,
          },
        ],
      }),
    );
    const page = await openLive();
    const rows = page.getByTestId("timeline-row");
    await expect.poll(() => rows.count(), WAIT).toBe(2);
    expect(await rows.evaluateAll((els) => els.map((e) => e.getAttribute("data-request-id")))).toEqual([
      "ran-before-2",
      "ran-before-1",
    ]);
    const first = rows.first();
    expect(await first.textContent()).toContain("make test");
    expect(await first.getByTestId("timeline-exit").textContent()).toBe("2");
    expect(await page.locator('[data-testid="timeline-row"].new').count()).toBe(0);
    // A live execution afterwards joins them, newest first.
    send(
      "exec.started",
      { pod: "pi-sandbox-3", requestId: "live-after", tenant: "acme" },
      { commandPreview: "uptime" },
    );
    await expect.poll(() => rows.count(), WAIT).toBe(3);
    expect(await rows.first().getAttribute("data-request-id")).toBe("live-after");
  });

  it("reconnects by itself after the stream drops, and keeps applying events", async () => {
    const page = await openLive();
    const opened = relay.streamsOpened;
    relay.refuse = true;
    relay.dropStreams();
    await expect
      .poll(() => page.getByTestId("connection-status").getAttribute("data-state"), WAIT)
      .toBe("reconnecting");
    expect(await page.getByTestId("connection-text").textContent()).toMatch(/reconnecting/i);
    // Connections are now refused: the retry fails and the page says the edge is unreachable.
    await expect
      .poll(() => page.getByTestId("connection-text").textContent(), WAIT)
      .toMatch(/Edge unreachable — reconnecting/);
    relay.refuse = false;
    await relay.waitForStreams(opened + 1, 20_000);
    await expect
      .poll(() => page.getByTestId("connection-status").getAttribute("data-state"), WAIT)
      .toBe("live");
    send(
      "lease.acquired",
      { pod: "pi-sandbox-5", requestId: "after-reconnect", tenant: "acme" },
      { leaseDurationSeconds: 45 },
    );
    await expect.poll(() => stateOf(page, "pi-sandbox-5"), WAIT).toBe("leased");
  }, 45_000);

  it("an edge error (503 no_agent) is shown and retried", async () => {
    relay.failWith = { code: "no_agent" };
    const page = await open("#token=good-admin-token");
    await expect
      .poll(() => page.getByTestId("connection-text").textContent(), WAIT)
      .toMatch(/503 \(no_agent\).*reconnecting/);
    relay.failWith = null;
    await expect.poll(() => page.getByTestId("pod-tile").count(), { timeout: 20_000, interval: 100 }).toBe(8);
  }, 45_000);

  it("shows every region the edge lists, one stream each; an event changes only its region", async () => {
    relay.snapshots.set("eu", poolSnapshot({ region: "eu", agentId: "agent-eu", podCount: 3 }));
    relay.unavailable.add("us");
    const page = await open("#token=good-admin-token");
    await expect.poll(() => page.getByTestId("region").count(), WAIT).toBe(2);
    const eu = page.locator('[data-testid="region"][data-region="eu"]');
    const local = page.locator('[data-testid="region"][data-region="local"]');
    await expect.poll(() => eu.getByTestId("pod-tile").count(), WAIT).toBe(3);
    expect(await local.getByTestId("pod-tile").count()).toBe(8);
    // The region without an agent is named, and its stream keeps retrying.
    expect(await page.getByTestId("region-errors").textContent()).toMatch(/us is unavailable: .*no_agent/);
    await expect
      .poll(() => page.getByTestId("connection-text").textContent(), WAIT)
      .toMatch(/^us: Edge answered 503 \(no_agent\) — reconnecting/);

    send("lease.acquired", {
      region: "eu",
      agentId: "agent-eu",
      pod: "pi-sandbox-1",
      requestId: "eu-1",
      tenant: "acme",
    });
    await expect
      .poll(
        () => eu.locator('[data-testid="pod-tile"][data-pod="pi-sandbox-1"]').getAttribute("data-state"),
        WAIT,
      )
      .toBe("leased");
    expect(await local.locator('[data-testid="pod-tile"][data-state="leased"]').count()).toBe(0);
    await page.screenshot({ path: "test-results/dashboard-regions.png", fullPage: true });

    // The agent of "us" connects: its stream comes up by itself.
    relay.snapshots.set("us", poolSnapshot({ region: "us", agentId: "agent-us", podCount: 2 }));
    relay.unavailable.delete("us");
    await expect
      .poll(() => page.getByTestId("connection-text").textContent(), { timeout: 20_000, interval: 100 })
      .toBe("Live · 3 regions");
    expect(
      await page.locator('[data-testid="region"][data-region="us"] [data-testid="pod-tile"]').count(),
    ).toBe(2);
    expect(await page.getByTestId("region-errors").isHidden()).toBe(true);
  }, 45_000);

  it("without /v1/pool, one stream to /v1/events (the edge's nearest region) is used", async () => {
    relay.noPoolRoute = true;
    const before = relay.requests.length;
    const page = await open("#token=good-admin-token");
    await expect.poll(() => page.getByTestId("pod-tile").count(), WAIT).toBe(8);
    expect(relay.requests.slice(before).map((r) => r.url)).toContain("/v1/events");
    expect(await page.getByTestId("connection-text").textContent()).toBe("Live");
  });

  it("an expired token shows a clear message and the sign-in box", async () => {
    const page = await open("#token=old-token");
    const msg = page.getByTestId("auth-message");
    await expect.poll(() => msg.textContent(), WAIT).toMatch(/expired/i);
    expect(await page.getByTestId("auth-panel").getAttribute("data-code")).toBe("token_expired");
    expect(await page.getByTestId("token-input").isVisible()).toBe(true);
    expect(await page.getByTestId("pod-tile").count()).toBe(0);
    expect(await page.evaluate(STORED_TOKEN)).toBeNull();
    await page.screenshot({ path: "test-results/dashboard-expired-token.png" });
  });

  it("a token without the admin scope says so", async () => {
    const page = await open("#token=viewer-token");
    await expect.poll(() => page.getByTestId("auth-message").textContent(), WAIT).toMatch(/sandbox:admin/);
    expect(await page.getByTestId("auth-panel").getAttribute("data-code")).toBe("insufficient_scope");
  });

  it("no token: asks for one; the sign-in box connects; a query-string token is ignored", async () => {
    const before = relay.requests.length;
    const page = await open("", { width: 1280, height: 800 }, "?token=good-admin-token");
    await expect.poll(() => page.getByTestId("auth-message").textContent(), WAIT).toMatch(/No token/);
    expect(await page.getByTestId("notice").textContent()).toMatch(/query string/);
    // The query-string token was never used as a credential.
    expect(relay.requests.slice(before).some((r) => r.authorization !== undefined)).toBe(false);

    await page.getByLabel(/Admin bearer token/).fill("good-admin-token");
    await page.getByRole("button", { name: "Connect" }).click();
    await expect.poll(() => page.getByTestId("pod-tile").count(), WAIT).toBe(8);
    expect(await page.getByTestId("auth-panel").isHidden()).toBe(true);
  });

  it("works on a narrow screen without horizontal scrolling", async () => {
    const page = await open("#token=good-admin-token", { width: 390, height: 844 });
    await expect.poll(() => page.getByTestId("pod-tile").count(), WAIT).toBe(8);
    send(
      "exec.started",
      { pod: "pi-sandbox-2", requestId: "narrow-1", tenant: "acme" },
      { commandPreview: "uname -a" },
    );
    await page.locator('[data-testid="timeline-row"][data-request-id="narrow-1"]').waitFor({ timeout: 8000 });
    const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth");
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: "test-results/dashboard-narrow.png", fullPage: true });
  });
});

describe("dashboard page after bundling", () => {
  // The Worker is bundled by wrangler (esbuild, keepNames, maybe minified): the page's script is a
  // string constant built beforehand (script.gen.ts), so that bundling must leave it untouched.
  it.each([false, true])("still runs when bundled with esbuild keepNames (minify: %s)", async (minify) => {
    const out = await build({
      entryPoints: ["edge/dashboard/page.ts"],
      bundle: true,
      format: "esm",
      platform: "neutral",
      keepNames: true,
      minify,
      write: false,
    });
    const code = out.outputFiles[0]!.text;
    const mod = (await import(
      `data:text/javascript;base64,${Buffer.from(code).toString("base64")}`
    )) as PageModule;
    expect(mod.dashboardHtml()).toContain(`<script>${DASHBOARD_SCRIPT}</script>`);
    const bundled = await startEventsRelay({ tokens: { ...TOKENS }, snapshots: [LOCAL], page: mod });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${bundled.url}/dashboard#token=good-admin-token`, { timeout: 10_000 });
      await expect.poll(() => page.getByTestId("pod-tile").count(), WAIT).toBe(8);
      bundled.send(
        poolEvent("lease.acquired", {
          region: "local",
          pod: "pi-sandbox-2",
          requestId: "b1",
          tenant: "acme",
        }),
      );
      await expect.poll(() => stateOf(page, "pi-sandbox-2"), WAIT).toBe("leased");
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      await bundled.close();
    }
  });
});
