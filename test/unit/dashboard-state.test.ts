import { describe, expect, it } from "vitest";
import { toMessage } from "../../edge/dashboard/decode.ts";
import { type DashboardState, initialState, MAX_EXECUTIONS, reduce } from "../../edge/dashboard/reducer.ts";
import { formatMs, percentile, type RegionView, view } from "../../edge/dashboard/view.ts";
import type { ExecutionSnapshot, PoolEvent, PoolSnapshot } from "../../shared/api.ts";
import { isoAfter, poolEvent, poolSnapshot } from "../support/pool-fixtures.ts";

const T0 = "2026-11-22T02:00:00.000Z";
const T0MS = Date.parse(T0);

function fold(
  msgs: Array<PoolSnapshot | PoolEvent>,
  nowMs = T0MS,
  start: DashboardState = initialState(),
): DashboardState {
  return msgs.reduce<DashboardState>(
    (s, m) => reduce(s, "type" in m ? { kind: "event", event: m } : { kind: "snapshot", snapshot: m }, nowMs),
    start,
  );
}

function region(state: DashboardState, nowMs = T0MS, name = "local"): RegionView {
  const r = view(state, nowMs).regions.find((x) => x.region === name);
  if (!r) throw new Error(`no region ${name}`);
  return r;
}

const at = (ms: number) => isoAfter(T0, ms);
const snap = (over: Partial<PoolSnapshot> & { podCount?: number } = {}) => poolSnapshot({ at: T0, ...over });
const acquired = (pod: string, requestId: string, ms: number, extra: Record<string, unknown> = {}) =>
  poolEvent(
    "lease.acquired",
    { pod, requestId, tenant: "acme", at: at(ms) },
    { leaseDurationSeconds: 45, ...extra },
  );
const released = (pod: string, requestId: string, ms: number, data?: Record<string, unknown>) =>
  poolEvent("lease.released", { pod, requestId, tenant: "acme", at: at(ms) }, data);

describe("dashboard reducer", () => {
  it("keeps the leader's scale decisions (pool size over time, reason, refusal) and queue depth per tenant", () => {
    const s = fold([
      snap(),
      poolEvent("pool.scale", { at: at(1_000) }, { reason: "demand", create: 20, total: 28, wanted: 40 }),
      poolEvent(
        "pool.scale",
        { at: at(2_000) },
        { reason: "create refused", create: 0, total: 30, refusal: "403: exceeded quota", backoffMs: 1000 },
      ),
      poolEvent(
        "pool.scale",
        { at: at(2_050) },
        { reason: "unschedulable", create: 0, total: 30, unschedulable: 4 },
      ),
      poolEvent("queue.entered", { requestId: "q1", tenant: "a", at: at(2_100) }),
      poolEvent("queue.entered", { requestId: "q2", tenant: "b", at: at(2_200) }),
      poolEvent("queue.entered", { requestId: "q3", tenant: "a", at: at(2_300) }),
    ]);
    const r = region(s);
    expect(r.scaleHistory.map((x) => [x.reason, x.total])).toEqual([
      ["demand", 28],
      ["create refused", 30],
      ["unschedulable", 30],
    ]);
    expect(r.scaleHistory[1]?.refusal).toBe("403: exceeded quota");
    expect(r.scale).toMatchObject({ reason: "unschedulable", unschedulable: 4 });
    expect(r.queueByTenant).toEqual([
      { tenant: "a", depth: 2 },
      { tenant: "b", depth: 1 },
    ]);
  });

  it("pod.failed shows the pod failed with the kubelet's reason and message; its sandbox leaves the list", () => {
    const s = fold([
      snap({ podCount: 2 }),
      acquired("pi-sandbox-0", "r1", 10),
      poolEvent(
        "pod.failed",
        { pod: "pi-sandbox-0", at: at(20) },
        { reason: "Evicted", message: 'Usage of EmptyDir volume "workspace" exceeds the limit "256Mi".' },
      ),
    ]);
    const tile = region(s).pods.find((p) => p.name === "pi-sandbox-0");
    expect(tile).toMatchObject({
      state: "failed",
      tenant: null,
      failure: 'Evicted: Usage of EmptyDir volume "workspace" exceeds the limit "256Mi".',
    });
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-1")?.failure).toBeNull();
  });

  it("a snapshot gives one tile per pod with its state", () => {
    const r = region(fold([snap()]));
    expect(r.pods).toHaveLength(8);
    expect(r.pods.every((p) => p.state === "ready")).toBe(true);
    expect(r.counts).toEqual({ starting: 0, ready: 8, leased: 0, recycling: 0, failed: 0 });
    expect(r.poolSize).toBe(8);
    // natural order: pi-sandbox-2 before pi-sandbox-10
    const names = region(fold([snap({ podCount: 11 })])).pods.map((p) => p.name);
    expect(names.indexOf("pi-sandbox-2")).toBeLessThan(names.indexOf("pi-sandbox-10"));
  });

  it("lease.acquired leases the tile with tenant, request, age and TTL; lease.released frees it", () => {
    let s = fold([snap(), acquired("pi-sandbox-3", "req-1", 1000)]);
    let tile = region(s, T0MS + 11_000).pods.find((p) => p.name === "pi-sandbox-3")!;
    expect(tile).toMatchObject({ state: "leased", tenant: "acme", requestId: "req-1", agentId: "agent-a" });
    expect(tile.ageMs).toBe(10_000);
    expect(tile.ttlMs).toBe(35_000);
    expect(region(s).totals.acquisitions).toBe(1);

    s = fold(
      [poolEvent("lease.renewed", { pod: "pi-sandbox-3", requestId: "req-1", at: at(16_000) })],
      T0MS,
      s,
    );
    tile = region(s, T0MS + 21_000).pods.find((p) => p.name === "pi-sandbox-3")!;
    expect(tile.ttlMs).toBe(40_000);
    expect(tile.ageMs).toBe(20_000);

    s = fold([released("pi-sandbox-3", "req-1", 20_000)], T0MS, s);
    tile = region(s).pods.find((p) => p.name === "pi-sandbox-3")!;
    expect(tile).toMatchObject({ state: "ready", tenant: null, requestId: null, ttlMs: null, ageMs: null });
  });

  it("the TTL countdown never goes below zero and uses the snapshot's lease duration", () => {
    const s = fold([snap(), poolEvent("lease.acquired", { pod: "pi-sandbox-0", requestId: "r", at: at(0) })]);
    const tile = region(s, T0MS + 60_000).pods.find((p) => p.name === "pi-sandbox-0")!;
    expect(tile.leaseDurationSeconds).toBe(45);
    expect(tile.ttlMs).toBe(0);
  });

  it("released with recycling shows the pod recycling until it is ready or deleted", () => {
    let s = fold([
      snap(),
      acquired("pi-sandbox-1", "r1", 0),
      released("pi-sandbox-1", "r1", 500, { recycle: "replace" }),
    ]);
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-1")!.state).toBe("recycling");
    s = fold([poolEvent("pod.deleted", { pod: "pi-sandbox-1", at: at(900) })], T0MS, s);
    expect(region(s).pods.map((p) => p.name)).not.toContain("pi-sandbox-1");
    s = fold(
      [
        poolEvent("pod.created", { pod: "pi-sandbox-9", at: at(1000) }),
        // a late event for the deleted pod must not bring its tile back
        released("pi-sandbox-1", "r1", 400),
      ],
      T0MS,
      s,
    );
    expect(region(s).pods.map((p) => p.name)).not.toContain("pi-sandbox-1");
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-9")!.state).toBe("starting");
    s = fold(
      [poolEvent("pod.ready", { pod: "pi-sandbox-9", at: at(1500) }, { podIP: "127.0.1.20" })],
      T0MS,
      s,
    );
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-9")).toMatchObject({
      state: "ready",
      podIP: "127.0.1.20",
    });
  });

  it("the agent's own release shapes: recycle replace → recycling, scrub/none → ready; fence → transitions", () => {
    const s = fold([
      snap(),
      poolEvent(
        "lease.acquired",
        { pod: "pi-sandbox-0", requestId: "a", at: at(1) },
        { fence: 7, acquireMs: 2, queueMs: 2 },
      ),
      poolEvent("lease.acquired", { pod: "pi-sandbox-1", requestId: "b", at: at(1) }, { fence: 3 }),
      poolEvent("lease.acquired", { pod: "pi-sandbox-2", requestId: "c", at: at(1) }, { fence: 4 }),
    ]);
    const leased = region(s, T0MS + 2001).pods.find((p) => p.name === "pi-sandbox-0")!;
    expect(leased.transitions).toBe(7);
    // no leaseDurationSeconds in the event: the duration known for the region is used
    expect(leased.ttlMs).toBe(43_000);
    const s2 = fold(
      [
        released("pi-sandbox-0", "a", 10, { recycle: "replace", heldMs: 9, fence: 7 }),
        released("pi-sandbox-1", "b", 10, { recycle: "scrub", killed: 0, removed: 2 }),
        released("pi-sandbox-2", "c", 10, { recycle: "none", unused: true }),
      ],
      T0MS,
      s,
    );
    const states = Object.fromEntries(region(s2).pods.map((p) => [p.name, p.state]));
    expect(states).toMatchObject({
      "pi-sandbox-0": "recycling",
      "pi-sandbox-1": "ready",
      "pi-sandbox-2": "ready",
    });
    const s3 = fold(
      [
        poolEvent(
          "lease.expired",
          { pod: "pi-sandbox-1", requestId: "zz", at: at(20) },
          { recycle: "replace" },
        ),
      ],
      T0MS,
      fold([poolEvent("lease.acquired", { pod: "pi-sandbox-1", requestId: "zz", at: at(15) })], T0MS, s2),
    );
    expect(region(s3).pods.find((p) => p.name === "pi-sandbox-1")!.state).toBe("recycling");
  });

  it("duplicate events are applied once", () => {
    const e = acquired("pi-sandbox-2", "dup", 100);
    const c = poolEvent("lease.conflict", { pod: "pi-sandbox-2", requestId: "dup", at: at(90) });
    const s = fold([snap(), c, c, e, e, e]);
    expect(region(s).totals).toMatchObject({ acquisitions: 1, conflicts: 1 });
  });

  it("a late release of an older lease does not free the pod from its new holder", () => {
    const s = fold([
      snap(),
      acquired("pi-sandbox-4", "old", 100),
      acquired("pi-sandbox-4", "new", 300),
      released("pi-sandbox-4", "old", 200),
    ]);
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-4")).toMatchObject({
      state: "leased",
      requestId: "new",
    });
  });

  it("an event older than the pod's last change is ignored (out of order)", () => {
    // Sent as acquire@100, release@500; received the other way round: the pod must end up free.
    const s = fold([snap(), released("pi-sandbox-5", "r5", 500), acquired("pi-sandbox-5", "r5", 100)]);
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-5")!.state).toBe("ready");
    const s2 = fold([snap(), acquired("pi-sandbox-5", "r5", 100), released("pi-sandbox-5", "r5", 500)]);
    const s3 = fold(
      [poolEvent("lease.renewed", { pod: "pi-sandbox-5", requestId: "r5", at: at(300) })],
      T0MS,
      s2,
    );
    expect(region(s3).pods.find((p) => p.name === "pi-sandbox-5")!.state).toBe("ready");
  });

  it("events older than the agent's snapshot are already in it and are skipped", () => {
    const early = poolEvent("lease.acquired", {
      pod: "pi-sandbox-0",
      requestId: "x",
      at: isoAfter(T0, -5000),
    });
    const s = fold([snap(), early]);
    expect(region(s).pods.find((p) => p.name === "pi-sandbox-0")!.state).toBe("ready");
    expect(region(s).totals.acquisitions).toBe(0);
  });

  it("a snapshot resets pods, the agent's queue and counters", () => {
    let s = fold([
      snap(),
      acquired("pi-sandbox-0", "a", 10),
      poolEvent("queue.entered", { requestId: "w1", tenant: "t", at: at(20) }),
      poolEvent("queue.timeout", { requestId: "w0", tenant: "t", at: at(25) }),
    ]);
    expect(region(s).queue.depth).toBe(1);
    expect(region(s).totals).toMatchObject({ acquisitions: 1, queueTimeouts: 1 });
    const later = at(60_000);
    s = fold(
      [
        poolSnapshot({
          at: later,
          podCount: 3,
          totals: { acquisitions: 40, conflicts: 2, queueTimeouts: 1, acquireP50Ms: 3, acquireP99Ms: 12 },
        }),
      ],
      T0MS + 60_000,
      s,
    );
    const r = region(s, T0MS + 60_000);
    expect(r.pods).toHaveLength(3);
    expect(r.pods.every((p) => p.state === "ready")).toBe(true);
    expect(r.queue.depth).toBe(0);
    expect(r.totals).toEqual({
      acquisitions: 40,
      conflicts: 2,
      queueTimeouts: 1,
      acquireP50Ms: 3,
      acquireP99Ms: 12,
    });
  });

  it("queue: entered adds a waiter with its wait so far; left, timeout and acquired remove it", () => {
    let s = fold([
      snap(),
      poolEvent("queue.entered", { requestId: "q1", tenant: "t1", at: at(1000) }),
      poolEvent("queue.entered", { requestId: "q2", tenant: "t2", at: at(2000) }),
      poolEvent("queue.entered", { requestId: "q3", tenant: "t3", at: at(2500) }),
    ]);
    let r = region(s, T0MS + 5000);
    expect(r.queue.depth).toBe(3);
    expect(r.queue.waiters).toEqual([
      { requestId: "q1", tenant: "t1", waitedMs: 4000 },
      { requestId: "q2", tenant: "t2", waitedMs: 3000 },
      { requestId: "q3", tenant: "t3", waitedMs: 2500 },
    ]);
    s = fold(
      [
        poolEvent("queue.left", { requestId: "q1", at: at(3000) }),
        poolEvent("queue.timeout", { requestId: "q2", at: at(3100) }),
        acquired("pi-sandbox-0", "q3", 3200),
      ],
      T0MS,
      s,
    );
    r = region(s);
    expect(r.queue.depth).toBe(0);
    expect(r.totals.queueTimeouts).toBe(1);
  });

  it("snapshot waiters keep counting their wait from the snapshot's waitedMs", () => {
    const s = fold([
      snap({ queue: { depth: 1, waiters: [{ requestId: "w", tenant: "t", waitedMs: 2500 }] } }),
    ]);
    expect(region(s, T0MS + 1000).queue.waiters[0]).toEqual({ requestId: "w", tenant: "t", waitedMs: 3500 });
  });

  it("executions: started then finished make one timeline row with every field", () => {
    const s = fold([
      snap(),
      poolEvent(
        "exec.started",
        { requestId: "e1", tenant: "acme", pod: "pi-sandbox-1", at: at(100) },
        { commandPreview: "echo hi" },
      ),
    ]);
    expect(region(s).executions).toHaveLength(1);
    expect(region(s).executions[0]).toMatchObject({ status: "running", commandPreview: "echo hi" });
    const s2 = fold(
      [
        poolEvent(
          "exec.finished",
          { requestId: "e1", tenant: "acme", pod: "pi-sandbox-1", at: at(300) },
          { exitCode: 3, durationMs: 200, queueMs: 12 },
        ),
      ],
      T0MS,
      s,
    );
    const rows = region(s2).executions;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      requestId: "e1",
      tenant: "acme",
      pod: "pi-sandbox-1",
      commandPreview: "echo hi",
      exitCode: 3,
      durationMs: 200,
      queueMs: 12,
      status: "finished",
    });
  });

  it("executions: finished before started is one row, completed by the late start", () => {
    const s = fold([
      snap(),
      poolEvent(
        "exec.finished",
        { requestId: "e2", pod: "p", at: at(500) },
        { exitCode: 0, durationMs: 50, queueMs: 0 },
      ),
      poolEvent("exec.started", { requestId: "e2", pod: "p", at: at(450) }, { commandPreview: "ls" }),
    ]);
    const rows = region(s).executions;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ commandPreview: "ls", exitCode: 0, status: "finished" });
  });

  it("executions: several commands of one chat request are separate rows; newest first; bounded", () => {
    const msgs: PoolEvent[] = [];
    for (let i = 0; i < 60; i++) {
      msgs.push(
        poolEvent(
          "exec.started",
          { requestId: "chat", pod: "p", at: at(i * 10) },
          { commandPreview: `c${i}` },
        ),
      );
      msgs.push(
        poolEvent(
          "exec.finished",
          { requestId: "chat", pod: "p", at: at(i * 10 + 5) },
          { exitCode: 0, durationMs: 5 },
        ),
      );
    }
    const rows = region(fold([snap(), ...msgs])).executions;
    expect(rows).toHaveLength(MAX_EXECUTIONS);
    expect(rows[0]!.commandPreview).toBe("c59");
    expect(rows.every((r) => r.status === "finished")).toBe(true);
  });

  it("acquire percentiles: live samples when there are some, else the snapshot's", () => {
    let s = fold([
      snap({
        totals: { acquisitions: 5, conflicts: 0, queueTimeouts: 0, acquireP50Ms: 7, acquireP99Ms: 30 },
      }),
    ]);
    expect(region(s).totals).toMatchObject({ acquireP50Ms: 7, acquireP99Ms: 30 });
    const events = [1, 2, 3, 4, 100].map((ms, i) =>
      acquired(`pi-sandbox-${i}`, `r${i}`, i + 1, { acquireMs: ms }),
    );
    s = fold(events, T0MS, s);
    expect(region(s).totals).toMatchObject({ acquisitions: 10, acquireP50Ms: 3, acquireP99Ms: 100 });
  });

  it("regions are kept apart and events without a region go to 'local'", () => {
    const s = fold([
      snap({ region: "eu", podCount: 2 }),
      snap({ region: "us", podCount: 3, agentId: "agent-us" }),
      poolEvent("lease.acquired", { region: "eu", pod: "pi-sandbox-0", requestId: "r", at: at(5) }),
    ]);
    const v = view(s, T0MS);
    expect(v.regions.map((r) => r.region)).toEqual(["eu", "us"]);
    expect(region(s, T0MS, "eu").counts.leased).toBe(1);
    expect(region(s, T0MS, "us").counts.leased).toBe(0);
    const { region: _omit, ...noRegion } = poolEvent("lease.conflict", { at: at(6) });
    const s2 = reduce(s, { kind: "event", event: noRegion }, T0MS);
    expect(region(s2, T0MS, "local").totals.conflicts).toBe(1);
  });

  it("counters from two agents of one region add up; each snapshot resets only its agent", () => {
    let s = fold([
      snap({
        agentId: "a1",
        totals: { acquisitions: 3, conflicts: 1, queueTimeouts: 0, acquireP50Ms: 1, acquireP99Ms: 2 },
      }),
      snap({
        agentId: "a2",
        totals: { acquisitions: 5, conflicts: 0, queueTimeouts: 2, acquireP50Ms: 4, acquireP99Ms: 9 },
      }),
    ]);
    expect(region(s).totals).toMatchObject({
      acquisitions: 8,
      conflicts: 1,
      queueTimeouts: 2,
      acquireP50Ms: 4,
    });
    expect(region(s).agents).toEqual(["a1", "a2"]);
    s = fold(
      [
        snap({
          agentId: "a1",
          at: at(10),
          totals: { acquisitions: 4, conflicts: 1, queueTimeouts: 0, acquireP50Ms: 1, acquireP99Ms: 2 },
        }),
      ],
      T0MS,
      s,
    );
    expect(region(s).totals.acquisitions).toBe(9);
  });

  it("agent clock skew: times are converted with the offset learned from the snapshot", () => {
    // The agent's clock is 1 h ahead of the browser's.
    const skew = 3_600_000;
    const agentT0 = isoAfter(T0, skew);
    const s = fold([
      poolSnapshot({ at: agentT0 }),
      poolEvent(
        "lease.acquired",
        { pod: "pi-sandbox-0", requestId: "r", at: isoAfter(agentT0, 2000) },
        { leaseDurationSeconds: 45 },
      ),
    ]);
    const tile = region(s, T0MS + 5000).pods.find((p) => p.name === "pi-sandbox-0")!;
    expect(tile.ageMs).toBe(3000);
    expect(tile.ttlMs).toBe(42_000);
  });

  it("the reducer never mutates its input state", () => {
    const s1 = fold([snap()]);
    const frozen = JSON.stringify(s1);
    fold(
      [acquired("pi-sandbox-0", "r", 10), poolEvent("queue.entered", { requestId: "q", at: at(20) })],
      T0MS,
      s1,
    );
    expect(JSON.stringify(s1)).toBe(frozen);
  });

  it("pool.leader names the leader", () => {
    const s = fold([
      snap(),
      poolEvent("pool.leader", { at: at(1), agentId: "agent-b" }, { leader: true, identity: "agent-b" }),
    ]);
    expect(region(s).leader).toBe("agent-b");
  });

  it("an agent that steps down is no longer shown as leader (the agent sends leader: false)", () => {
    const led = fold([
      snap(),
      poolEvent("pool.leader", { at: at(1), agentId: "agent-b" }, { leader: true, identity: "agent-b" }),
    ]);
    const down = fold(
      [poolEvent("pool.leader", { at: at(2), agentId: "agent-b" }, { leader: false, identity: "agent-b" })],
      T0MS,
      led,
    );
    expect(region(down).leader).toBeNull();
    // Another agent's step-down does not clear the current leader.
    const other = fold(
      [poolEvent("pool.leader", { at: at(3), agentId: "agent-c" }, { leader: false, identity: "agent-c" })],
      T0MS,
      led,
    );
    expect(region(other).leader).toBe("agent-b");
  });
});

describe("executions the agent already knows (the snapshot's history)", () => {
  const ran = (
    requestId: string,
    startMs: number,
    over: Partial<ExecutionSnapshot> = {},
  ): ExecutionSnapshot => ({
    requestId,
    tenant: "acme",
    pod: "pi-sandbox-1",
    commandPreview: `run ${requestId}`,
    startedAt: at(startMs),
    finishedAt: at(startMs + 40),
    exitCode: 0,
    timedOut: false,
    durationMs: 40,
    queueMs: 2,
    ...over,
  });

  it("a page opened after executions lists them at once, newest first, on the local clock", () => {
    // The page's clock is 5 s ahead of the agent's: every time shifts by the learned offset.
    const now = T0MS + 5_000;
    const s = fold(
      [
        snap({
          executions: [
            ran("late", -1_000, { finishedAt: null, exitCode: null, durationMs: null }),
            ran("early", -9_000, { exitCode: 3, durationMs: 80 }),
          ],
        }),
      ],
      now,
    );
    const rows = region(s, now).executions;
    expect(rows.map((x) => [x.requestId, x.status])).toEqual([
      ["late", "running"],
      ["early", "finished"],
    ]);
    expect(rows[0]!.startedAtMs).toBe(T0MS - 1_000 + 5_000);
    expect(rows[1]).toMatchObject({
      tenant: "acme",
      pod: "pi-sandbox-1",
      commandPreview: "run early",
      exitCode: 3,
      durationMs: 80,
      queueMs: 2,
      finishedAtMs: T0MS - 9_000 + 40 + 5_000,
    });
  });

  it("a running execution of the snapshot is finished by the later exec.finished: one row", () => {
    const s = fold([
      snap({ executions: [ran("r1", -500, { finishedAt: null, exitCode: null, durationMs: null })] }),
      poolEvent(
        "exec.finished",
        { requestId: "r1", tenant: "acme", pod: "pi-sandbox-1", at: at(200) },
        { exitCode: 0, durationMs: 700 },
      ),
    ]);
    const rows = region(s).executions;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      requestId: "r1",
      status: "finished",
      durationMs: 700,
      commandPreview: "run r1",
    });
  });

  it("a reconnect's snapshot replaces that agent's rows without duplicating what was seen live", () => {
    const live = fold([
      snap(),
      poolEvent(
        "exec.started",
        { requestId: "r2", tenant: "acme", pod: "pi-sandbox-1", at: at(100) },
        { commandPreview: "run r2" },
      ),
    ]);
    const liveKey = region(live).executions[0]!.key;
    // The reconnect's snapshot comes from the same agent, later, with a slightly different transit time.
    const again = fold(
      [snap({ at: at(1_000), executions: [ran("r2", 100, { finishedAt: at(900), durationMs: 800 })] })],
      T0MS + 1_020,
      live,
    );
    const rows = region(again, T0MS + 1_020).executions;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ requestId: "r2", status: "finished", durationMs: 800 });
    // The same execution keeps its key, so the page does not flash it as new.
    expect(rows[0]!.key).toBe(liveKey);
  });

  it("keeps other agents' rows, and an agent that sends no history keeps what was seen", () => {
    const s = fold([
      snap({ agentId: "a1", executions: [ran("from-a1", -100)] }),
      snap({ agentId: "a2", executions: [ran("from-a2", -200)] }),
      snap({ agentId: "a1", executions: [ran("from-a1", -100), ran("newer-a1", -50)] }),
      snap({ agentId: "old-agent" }),
    ]);
    expect(
      region(s)
        .executions.map((x) => x.requestId)
        .sort(),
    ).toEqual(["from-a1", "from-a2", "newer-a1"]);
  });

  it("is bounded like the live timeline", () => {
    const many = Array.from({ length: MAX_EXECUTIONS + 10 }, (_, i) => ran(`r${i}`, -i * 100));
    const rows = region(fold([snap({ executions: many })])).executions;
    expect(rows).toHaveLength(MAX_EXECUTIONS);
    expect(rows[0]!.requestId).toBe("r0");
  });
});

describe("toMessage", () => {
  it("accepts well-formed snapshot and pool messages and rejects junk", () => {
    const s = poolSnapshot();
    expect(toMessage({ event: "snapshot", data: JSON.stringify(s) })).toEqual({
      kind: "snapshot",
      snapshot: s,
    });
    const e = poolEvent("pod.ready", { pod: "x" });
    expect(toMessage({ event: "pool", data: JSON.stringify(e) })).toEqual({
      kind: "event",
      event: e,
    });
    expect(toMessage({ event: "pool", data: "{not json" })).toBeNull();
    expect(toMessage({ event: "pool", data: JSON.stringify({ type: 1 }) })).toBeNull();
    expect(toMessage({ event: "snapshot", data: JSON.stringify({ region: "x" }) })).toBeNull();
    expect(toMessage({ event: "message", data: JSON.stringify(e) })).toBeNull();
  });

  it("a snapshot with a malformed pod keeps the good pods", () => {
    const s = poolSnapshot({ podCount: 2 });
    const bad = { ...s, pods: [...s.pods, { name: "x", state: "exploded" }] };
    const m = toMessage({ event: "snapshot", data: JSON.stringify(bad) });
    expect(m?.kind === "snapshot" && m.snapshot.pods).toHaveLength(2);
  });
});

describe("helpers", () => {
  it("percentile is nearest-rank", () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5], 99)).toBe(5);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2);
    expect(
      percentile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
    ).toBe(99);
  });
  it("formatMs", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(12.4)).toBe("12 ms");
    expect(formatMs(1530)).toBe("1.5 s");
    expect(formatMs(42_000)).toBe("42 s");
    expect(formatMs(125_000)).toBe("2m 05s");
  });
});
