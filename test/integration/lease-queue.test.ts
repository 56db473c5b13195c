import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { microNow } from "../../cluster-agent/k8s/microtime.ts";
import type { LeaseHandle } from "../../cluster-agent/leases/types.ts";
import type { PoolEvent } from "../../shared/api.ts";
import {
  type LeaseCluster,
  startPool as startClusterPool,
  startLeaseCluster,
  waitFor,
  waitForSettledPool,
} from "../support/lease-cluster.ts";

// One agent in this process (real lease manager + controller, real client-node) against devcluster:
// the queue, the tenant cap, renewal, loss, and fencing, on a small pool.
let cluster: LeaseCluster;
const pools: AgentPool[] = [];

async function startPool(extra: Record<string, string>): Promise<{ pool: AgentPool; events: PoolEvent[] }> {
  const started = await startClusterPool(cluster, { AGENT_ID: `q-${pools.length}`, ...extra });
  pools.push(started.pool);
  return started;
}

async function must(p: Promise<import("../../shared/errors.ts").Result<LeaseHandle>>): Promise<LeaseHandle> {
  const r = await p;
  if (!r.ok) throw r.error;
  return r.value;
}

beforeAll(async () => {
  cluster = await startLeaseCluster("lease-queue");
}, 60_000);

afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

afterAll(async () => {
  await cluster?.close();
});

describe("lease queue, cap, renewal and fencing (one agent)", () => {
  it("serves waiters in FIFO order and drops an aborted waiter at once", async () => {
    const { pool, events } = await startPool({
      POOL_SIZE: "2",
      POOL_MAX_PODS: "2", // a fixed pool: these cases are about the queue, not scaling
      // A waiter is served only after a released pod has been replaced and is Ready again, which
      // takes seconds on a loaded machine: the queue limit is not what this case is about.
      QUEUE_TIMEOUT_SECONDS: "120",
      LEASE_TTL_SECONDS: "6",
      TENANT_MAX_LEASES: "10",
    });
    await waitForSettledPool(cluster, 2, 60_000);
    const m = pool.manager;
    const h1 = await must(m.acquire({ tenant: "t", requestId: "hold-1" }));
    const h2 = await must(m.acquire({ tenant: "t", requestId: "hold-2" }));
    expect(h1.pod).not.toBe(h2.pod);

    const order: string[] = [];
    const ac = new AbortController();
    const waiting = ["w1", "w2", "w3"].map((id) =>
      m.acquire({ tenant: "t", requestId: id, signal: id === "w2" ? ac.signal : undefined }).then((r) => {
        order.push(id);
        return r;
      }),
    );
    await waitFor("3 queued", () => m.queueDepth === 3, 30_000, 10);
    // Abort the middle one: it leaves at once — with every pod still held, nothing but the abort
    // can end its wait before the 120 s queue limit — and nobody else moves.
    ac.abort();
    const aborted = await waiting[1];
    expect(aborted?.ok).toBe(false);
    if (aborted && !aborted.ok) expect(aborted.error.code).toBe("request_cancelled");
    expect(order).toEqual(["w2"]);
    expect(m.queueDepth).toBe(2);

    await h1.release();
    const r1 = await waiting[0];
    expect(r1?.ok).toBe(true);
    expect(order).toEqual(["w2", "w1"]);
    await h2.release();
    const r3 = await waiting[2];
    expect(r3?.ok).toBe(true);
    expect(order).toEqual(["w2", "w1", "w3"]);
    // The aborted waiter never got a lease.
    expect(events.some((e) => e.type === "lease.acquired" && e.requestId === "w2")).toBe(false);
    expect(events.filter((e) => e.type === "queue.entered").map((e) => e.requestId)).toEqual([
      "w1",
      "w2",
      "w3",
    ]);
    for (const r of [r1, r3]) if (r?.ok) await r.value.release();
  }, 180_000);

  it("the pool share: while tenant A holds its share and has a waiter queued, tenant B is served from the rest", async () => {
    // POOL_SIZE 2, POOL_MAX_PODS 3, 50 %: a tenant holds at most max(2, ceil(1.5)) = 2 pods.
    const { pool } = await startPool({
      POOL_SIZE: "2",
      POOL_MAX_PODS: "3",
      TENANT_POOL_SHARE_PERCENT: "50",
      QUEUE_TIMEOUT_SECONDS: "120",
      LEASE_TTL_SECONDS: "6",
    });
    await waitForSettledPool(cluster, 2, 60_000);
    const m = pool.manager;
    const a = [
      await must(m.acquire({ tenant: "a", requestId: "a-1" })),
      await must(m.acquire({ tenant: "a", requestId: "a-2" })),
    ];
    // A's third waits for its own tenant, not for the pool: the pool grows to its third pod and
    // that pod stays free while a-3 waits (without the share a-3 would take it, and B would find
    // the whole pool held by A).
    const ac = new AbortController();
    const a3 = m.acquire({ tenant: "a", requestId: "a-3", signal: ac.signal });
    await waitFor(
      "a free pod while a-3 still waits",
      () => m.queueDepth === 1 && pool.snapshot().pods.some((p) => p.state === "ready"),
      60_000,
      50,
    );
    // B arrives after A's waiter and is served first, from the pod beyond A's share.
    const b = await must(m.acquire({ tenant: "b", requestId: "b-1" }));
    expect(a.map((h) => h.pod)).not.toContain(b.pod);
    expect(m.queueDepth).toBe(1);
    ac.abort();
    const gone = await a3;
    expect(gone.ok).toBe(false);
    for (const h of [...a, b]) await h.release();
  }, 120_000);

  it("times out a waiter with queue_timeout and a retry hint after QUEUE_TIMEOUT_SECONDS", async () => {
    const { pool, events } = await startPool({
      POOL_SIZE: "2",
      POOL_MAX_PODS: "2",
      QUEUE_TIMEOUT_SECONDS: "3",
      LEASE_TTL_SECONDS: "6",
      TENANT_MAX_LEASES: "10",
    });
    await waitForSettledPool(cluster, 2, 60_000);
    const m = pool.manager;
    const held = [
      await must(m.acquire({ tenant: "t", requestId: "hold-1" })),
      await must(m.acquire({ tenant: "t", requestId: "hold-2" })),
    ];
    // Both pods held: the next waiter times out after QUEUE_TIMEOUT_SECONDS (never before it).
    const t0 = performance.now();
    const late = await m.acquire({ tenant: "t", requestId: "late" });
    const waited = performance.now() - t0;
    expect(late.ok).toBe(false);
    if (!late.ok) {
      expect(late.error.code).toBe("queue_timeout");
      expect(late.error.retryAfterSeconds).toBeGreaterThan(0);
    }
    expect(waited).toBeGreaterThanOrEqual(2_900);
    expect(m.queueDepth).toBe(0);
    expect(events.some((e) => e.type === "queue.timeout" && e.requestId === "late")).toBe(true);
    expect(pool.snapshot().totals.queueTimeouts).toBe(1);
    for (const h of held) await h.release();
  }, 120_000);

  it("queues a tenant at its cap while another tenant is still served", async () => {
    const { pool } = await startPool({
      POOL_SIZE: "3",
      POOL_MAX_PODS: "3", // a fixed pool: these cases are about the queue, not scaling
      TENANT_MAX_LEASES: "1",
      QUEUE_TIMEOUT_SECONDS: "10",
      LEASE_TTL_SECONDS: "6",
    });
    await waitForSettledPool(cluster, 3, 60_000);
    const m = pool.manager;
    const a1 = await must(m.acquire({ tenant: "A", requestId: "a1" }));
    let a2Done = false;
    const a2 = m.acquire({ tenant: "A", requestId: "a2" }).then((r) => {
      a2Done = true;
      return r;
    });
    await waitFor("a2 queued", () => m.queueDepth === 1, 30_000, 10);
    // Free pods exist, but A is at its cap; B, arriving later, is served first.
    const b1 = await must(m.acquire({ tenant: "B", requestId: "b1" }));
    expect(b1.pod).not.toBe(a1.pod);
    await new Promise((r) => setTimeout(r, 300));
    expect(a2Done).toBe(false);
    expect(m.queueWaiters().map((w) => w.requestId)).toEqual(["a2"]);
    await a1.release();
    const r = await a2;
    expect(r.ok).toBe(true);
    if (r.ok) await r.value.release();
    await b1.release();
  }, 120_000);

  it("renewal keeps a lease through a hold longer than the TTL; a stolen lease is reported lost", async () => {
    const { pool, events } = await startPool({
      POOL_SIZE: "1",
      POOL_MAX_PODS: "1", // a fixed pool: these cases are about the queue, not scaling
      LEASE_TTL_SECONDS: "3",
      TENANT_MAX_LEASES: "10",
    });
    await waitForSettledPool(cluster, 1, 60_000);
    const h = await must(pool.manager.acquire({ tenant: "t", requestId: "long" }));
    // Hold 2.5 TTLs: without renewal the controller would recycle the pod after 3 s.
    await new Promise((r) => setTimeout(r, 7_500));
    expect(h.lost.aborted).toBe(false);
    const lease = await cluster.clients.coordination.readNamespacedLease({
      name: h.pod,
      namespace: cluster.namespace,
    });
    expect(lease.spec?.holderIdentity).toBe(`q-${pools.length - 1}/long`);
    expect(
      events.filter((e) => e.type === "lease.renewed" && e.requestId === "long").length,
    ).toBeGreaterThanOrEqual(2);
    expect(events.some((e) => e.type === "lease.expired")).toBe(false);

    // Steal it through the API, as another holder would.
    const now = microNow();
    await cluster.clients.coordination.replaceNamespacedLease({
      name: h.pod,
      namespace: cluster.namespace,
      body: {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: "thief/x",
          acquireTime: now,
          renewTime: now,
          leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1,
        },
      },
    });
    await waitFor("lost signal", () => h.lost.aborted, 30_000, 20);
    expect(events.some((e) => e.type === "lease.lost" && e.requestId === "long" && e.pod === h.pod)).toBe(
      true,
    );
    await h.release(); // idempotent, never throws, does not touch the thief's lease
    await h.release();
    const after = await cluster.clients.coordination
      .readNamespacedLease({ name: h.pod, namespace: cluster.namespace })
      .catch(() => undefined);
    // Either still the thief's (we did not clear it) or already recycled by the controller (thief stopped renewing).
    if (after) expect(after.spec?.holderIdentity).toBe("thief/x");
  }, 120_000);

  it("refuses a stale holder's fencing token once the pod is re-leased (scrub recycling)", async () => {
    const { pool } = await startPool({
      POOL_SIZE: "1",
      POOL_MAX_PODS: "1", // a fixed pool: these cases are about the queue, not scaling
      RECYCLE: "scrub",
      LEASE_TTL_SECONDS: "6",
      TENANT_MAX_LEASES: "10",
    });
    await waitForSettledPool(cluster, 1, 60_000);
    const exec = new HttpExecutor({ poolToken: cluster.poolToken });
    const run = (h: LeaseHandle, fence: number, command: string) =>
      exec.exec(
        { namespace: h.namespace, pod: h.pod, podIP: h.podIP, fence },
        { command, timeoutMs: 5_000, signal: new AbortController().signal },
      );
    const a = await must(pool.manager.acquire({ tenant: "t", requestId: "a" }));
    const ra = await run(a, a.fence, "echo a > /workspace/a && cat /workspace/a");
    expect(ra.ok && ra.value.stdout.trim()).toBe("a");
    await a.release();
    const b = await must(pool.manager.acquire({ tenant: "t", requestId: "b" }));
    expect(b.pod).toBe(a.pod); // scrubbed and reused
    expect(b.fence).toBeGreaterThan(a.fence);
    const rb = await run(b, b.fence, "ls -A /workspace | wc -l");
    expect(rb.ok && rb.value.stdout.trim()).toBe("0"); // the scrub wiped a's file
    // The old holder comes back with its old token: refused.
    const stale = await run(a, a.fence, "echo stale");
    expect(stale.ok).toBe(false);
    if (!stale.ok) expect(stale.error.code).toBe("stale_lease");
    await b.release();
  }, 120_000);
  it("an abort that races a successful compare-and-swap gives the lease straight back", async () => {
    const { pool, events } = await startPool({
      POOL_SIZE: "1",
      POOL_MAX_PODS: "1", // a fixed pool: these cases are about the queue, not scaling
      LEASE_TTL_SECONDS: "6",
      TENANT_MAX_LEASES: "10",
    });
    const v = await waitForSettledPool(cluster, 1, 60_000);
    const pod = v.live[0]?.metadata?.name;
    const ac = new AbortController();
    const pending = pool.manager.acquire({ tenant: "t", requestId: "racer", signal: ac.signal });
    // The pump has already sent the PUT for the only free pod; the caller leaves before the answer.
    await new Promise((r) => setImmediate(r));
    ac.abort();
    const r = await pending;
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("request_cancelled");
    await waitFor(
      "the unused lease freed again",
      () => events.some((e) => e.type === "lease.released" && e.requestId === "racer"),
      30_000,
      10,
    );
    const released = events.find((e) => e.type === "lease.released" && e.requestId === "racer");
    expect(released?.type === "lease.released" && released.data.unused).toBe(true);
    // Nothing ran in it, so it is not recycled: same pod, free, servable.
    const after = await waitForSettledPool(cluster, 1, 30_000);
    expect(after.live[0]?.metadata?.name).toBe(pod);
    const next = await must(pool.manager.acquire({ tenant: "t", requestId: "next" }));
    expect(next.pod).toBe(pod);
    await next.release();
  }, 120_000);
});
