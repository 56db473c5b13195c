import { mkdir } from "node:fs/promises";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { SCOPES } from "../../shared/api.ts";
import { createRelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { agentUrlFromLog, bearer, tempDir, waitFor } from "../e2e/stack-helpers.ts";
import { signedAgentCall } from "../support/agent-call.ts";
import { launchChromium } from "../support/browser.ts";

// Issue 7 against the REAL stack: the dashboard page served by the edge in workerd, fed by the
// events of real agent processes (two replicas) leasing real devcluster pods, in headless Chromium.

const POOL = 2;
const WAIT = { timeout: 15_000, interval: 100 };
const tmp = tempDir("dashboard-live-");
let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  await mkdir("test-results", { recursive: true });
  [stack, browser] = await Promise.all([
    startStack({
      dir: tmp.dir,
      agentsPerRegion: 2,
      poolSize: POOL,
      // info: the agents log their own URL. POOL_MAX_PODS = POOL: "the pool is exhausted" must
      // mean it; the elastic pool would otherwise replace the two held pods at once, and a third
      // caller that arrives after they are Ready never waits.
      agentEnv: { LOG_LEVEL: "info", POOL_MAX_PODS: String(POOL) },
      edgeVars: { TENANT_QUOTA_BURST: "100", TENANT_QUOTA_PER_MINUTE: "600" },
    }),
    launchChromium(),
  ]);
}, 90_000);

afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close().catch(() => {});
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
  tmp.remove();
});

async function open(token: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${stack.dashboardUrl}#token=${token}`, { timeout: 15_000 });
  return page;
}

async function openLive(): Promise<Page> {
  const page = await open(stack.tokens.admin);
  await expect
    .poll(() => page.getByTestId("connection-status").getAttribute("data-state"), WAIT)
    .toBe("live");
  await expect.poll(() => readyTiles(page), WAIT).toBe(POOL);
  await page.evaluate("window.__sameDocument = true");
  return page;
}

const readyTiles = (page: Page) => page.locator('[data-testid="pod-tile"][data-state="ready"]').count();
const leasedTiles = (page: Page) => page.locator('[data-testid="pod-tile"][data-state="leased"]');

function sleepExec(seconds: number): Promise<{ status: number; requestId: string | null }> {
  return fetch(`${stack.edgeUrl}/v1/exec`, {
    method: "POST",
    headers: bearer(stack.tokens.tenantA),
    body: JSON.stringify({ command: `sleep ${seconds}; echo slept` }),
    signal: AbortSignal.timeout(30_000),
  }).then(async (res) => {
    await res.text();
    return { status: res.status, requestId: res.headers.get("x-request-id") };
  });
}

/** An exec sent straight to one agent replica, with a relay signed as the edge would sign it. */
async function directExec(
  agentUrl: string,
  command: string,
  requestId: string,
): Promise<{ status: number; requestId: string | null }> {
  const signer = await createRelaySigner({
    privateJwk: stack.keys.local!.relayPrivate,
    audience: relayAudience("local"),
  });
  const res = await signedAgentCall(signer, agentUrl, {
    method: "POST",
    path: "/v1/exec",
    body: { command, timeoutSeconds: 30 },
    subject: "alice",
    scopes: [SCOPES.exec],
    requestId,
  });
  await res.text();
  return { status: res.status, requestId: res.headers.get("x-request-id") };
}

describe("the live dashboard on the real stack", () => {
  it("shows the pool's ready pods", async () => {
    const page = await openLive();
    expect(await page.getByTestId("pod-tile").count()).toBe(POOL);
    expect(await page.getByTestId("connection-text").textContent()).toBe("Live");
    expect(await page.getByTestId("region").getAttribute("data-region")).toBe("local");
  });

  it("a tile turns leased while a command runs, the execution appears in the timeline, and the pod returns", async () => {
    const page = await openLive();
    const watchOne = async (
      run: () => Promise<{ status: number; requestId: string | null }>,
      command: string,
    ) => {
      const running = run();
      await expect.poll(() => leasedTiles(page).count(), WAIT).toBe(1);
      const tile = leasedTiles(page).first();
      expect(await tile.getByTestId("pod-tenant").textContent()).toBe("tenant-a");
      const holder = await tile.getByTestId("pod-request").getAttribute("title");
      const { status, requestId } = await running;
      expect(status).toBe(200);
      expect(holder).toBe(requestId);
      const row = page.locator(`[data-testid="timeline-row"][data-request-id="${requestId}"]`);
      await expect.poll(() => row.getAttribute("data-status"), WAIT).toBe("finished");
      expect(await row.textContent()).toContain(command);
      expect(await row.getByTestId("timeline-exit").textContent()).toBe("0");
      // Released (recycle=replace: the pod goes, a fresh one takes its place).
      await expect.poll(() => leasedTiles(page).count(), WAIT).toBe(0);
      await expect.poll(() => readyTiles(page), WAIT).toBe(POOL);
    };

    // Through the edge (whichever replica the tunnel picks)...
    await watchOne(() => sleepExec(2), "sleep 2; echo slept");
    // ...and on each replica in turn (a relay signed for it, sent to its own port): the page
    // shows every replica's leases and executions, not only those of the agent it streams from.
    for (const agent of stack.agents) {
      const url = await waitFor("the agent's URL", () => agentUrlFromLog(agent.logFile));
      const command = `sleep 2; echo on ${agent.agentId}`;
      await watchOne(() => directExec(url, command, `direct-${agent.agentId}-${Date.now()}`), command);
    }
    expect(await page.evaluate("window.__sameDocument")).toBe(true);
  }, 90_000);

  it("the queue shows a waiter when the pool is exhausted", async () => {
    const page = await openLive();
    const runs = [sleepExec(3), sleepExec(3), sleepExec(3)];
    await expect.poll(() => leasedTiles(page).count(), WAIT).toBe(POOL);
    const waiter = page.getByTestId("queue-waiter");
    await expect.poll(() => waiter.count(), WAIT).toBe(1);
    expect(await page.getByTestId("queue-depth").textContent()).toBe("1");
    expect(await waiter.textContent()).toContain("tenant-a");
    await page.screenshot({ path: "test-results/dashboard-live.png", fullPage: true });
    const results = await Promise.all(runs);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    await expect.poll(() => page.getByTestId("queue-depth").textContent(), WAIT).toBe("0");
    await expect.poll(() => leasedTiles(page).count(), WAIT).toBe(0);
    // All three executions are in the timeline, whichever replica ran them.
    for (const r of results) {
      const row = page.locator(`[data-testid="timeline-row"][data-request-id="${r.requestId}"]`);
      await expect.poll(() => row.getAttribute("data-status"), WAIT).toBe("finished");
    }
  });

  it("a page opened after executions lists them at once: each agent's history is in its snapshot", async () => {
    // Run first, on each replica (and once through the edge), with no page open to see them live.
    const ran: Array<{ requestId: string | null; command: string }> = [];
    const viaEdge = await sleepExec(0);
    expect(viaEdge.status).toBe(200);
    ran.push({ requestId: viaEdge.requestId, command: "sleep 0; echo slept" });
    for (const agent of stack.agents) {
      const url = await waitFor("the agent's URL", () => agentUrlFromLog(agent.logFile));
      const command = `echo before the page on ${agent.agentId}`;
      const r = await directExec(url, command, `history-${agent.agentId}-${Date.now()}`);
      expect(r.status).toBe(200);
      ran.push({ requestId: r.requestId, command });
    }
    const page = await openLive();
    for (const r of ran) {
      const row = page.locator(`[data-testid="timeline-row"][data-request-id="${r.requestId}"]`);
      await expect.poll(() => row.getAttribute("data-status"), WAIT).toBe("finished");
      expect(await row.textContent()).toContain(r.command);
      expect(await row.getByTestId("timeline-exit").textContent()).toBe("0");
    }
    expect(await page.getByText("No executions yet").count()).toBe(0);
  });

  it("a bad token shows a clear message", async () => {
    const page = await open("not-a-real-token");
    const msg = page.getByTestId("auth-message");
    await expect.poll(() => msg.textContent(), WAIT).toMatch(/token/i);
    expect(await page.getByTestId("auth-panel").getAttribute("data-code")).toMatch(
      /invalid_token|unauthenticated/,
    );
    expect(await page.getByTestId("token-input").isVisible()).toBe(true);
    expect(await page.getByTestId("pod-tile").count()).toBe(0);

    // A real tenant token without the admin scope.
    const viewer = await open(stack.tokens.tenantA);
    await expect.poll(() => viewer.getByTestId("auth-message").textContent(), WAIT).toMatch(/sandbox:admin/);
  });

  it("a sandbox's running processes: one started before the page opened, one live; ended ones leave", async () => {
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${stack.edgeUrl}${path}`, {
        ...init,
        headers: bearer(stack.tokens.tenantA),
        signal: AbortSignal.timeout(30_000),
      });
    const made = await api("/v1/sandboxes", { method: "POST", body: "{}" });
    expect(made.status).toBe(201);
    const id = ((await made.json()) as { id: string }).id;
    const start = async (command: string) => {
      const res = await api(`/v1/sandboxes/${id}/processes`, {
        method: "POST",
        body: JSON.stringify({ command }),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { pid: number }).pid;
    };
    try {
      const before = await start("sleep 600");
      const page = await open(stack.tokens.admin);
      const row = page.locator(`[data-testid="sandbox-row"][data-sandbox-id="${id}"]`);
      const pids = () =>
        row
          .getByTestId("sandbox-process")
          .evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-pid"))));
      await expect.poll(pids, WAIT).toEqual([before]);
      expect(await row.getByTestId("sandbox-processes").textContent()).toContain(`${before} sleep 600`);
      const live = await start("sleep 601");
      await expect.poll(pids, WAIT).toEqual([before, live]);
      // Killed: the agent's exit watch sees it end, and the page drops it.
      expect((await api(`/v1/sandboxes/${id}/processes/${before}`, { method: "DELETE" })).status).toBe(200);
      await expect.poll(pids, WAIT).toEqual([live]);
      expect(await page.evaluate("window.__sameDocument ?? true")).toBe(true);
    } finally {
      await api(`/v1/sandboxes/${id}`, { method: "DELETE" });
    }
  }, 60_000);
});
