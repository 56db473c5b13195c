/**
 * The lease manager's dispatch rules as fast specifications: the real LeaseManager on an
 * in-memory PoolStore (the API's CAS semantics) with a fake clock, so queue deadlines, hand-off
 * grace and renewal periods run in microseconds. The same rules against devcluster are in
 * test/integration/lease-queue.test.ts and lease-replicas.test.ts.
 */
import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { Scrubber } from "../../cluster-agent/exec/executor.ts";
import { LeaseManager, type LeaseManagerOptions } from "../../cluster-agent/leases/manager.ts";
import type { LeaseHandle } from "../../cluster-agent/leases/types.ts";
import { createLogger } from "../../cluster-agent/telemetry/logger.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { PoolEvent } from "../../shared/events.ts";
import { FakeClock, flush, MemoryPoolStore } from "../support/memory-pool-store.ts";

const cleanScrubber: Scrubber = { scrub: async () => ok({ killed: 0, removed: 0 }) };

function setup(pods: string[], over: Partial<LeaseManagerOptions> = {}) {
  const clock = new FakeClock();
  const store = new MemoryPoolStore();
  for (const p of pods) store.addPod(p);
  const bus = new EventBus("agent-a", "local");
  const events: PoolEvent[] = [];
  bus.on((e) => events.push(e));
  const manager = new LeaseManager({
    store,
    bus,
    log: createLogger({ level: "silent" }),
    namespace: "pi-sandbox",
    agentId: "agent-a",
    leaseTtlSeconds: 45,
    queueTimeoutSeconds: 15,
    tenantMaxLeases: 0,
    recycle: "scrub",
    scrubber: cleanScrubber,
    random: () => 0,
    clock,
    ...over,
  });
  const acquire = (requestId: string, tenant = "t1", signal?: AbortSignal) => {
    const p = manager.acquire({ tenant, requestId, ...(signal ? { signal } : {}) });
    const state: { result?: Result<LeaseHandle> } = {};
    void p.then((r) => {
      state.result = r;
    });
    return state;
  };
  const held = (s: { result?: Result<LeaseHandle> }): LeaseHandle => {
    if (!s.result?.ok) throw new Error(`not served: ${JSON.stringify(s.result)}`);
    return s.result.value;
  };
  const types = (requestId: string) => events.filter((e) => e.requestId === requestId).map((e) => e.type);
  return { clock, store, manager, events, acquire, held, types };
}

describe("LeaseManager dispatch (fake clock)", () => {
  it("serves waiters in arrival order as pods are released", async () => {
    const { manager, acquire, held, clock } = setup(["p0"]);
    const a = acquire("a");
    const b = acquire("b");
    const c = acquire("c");
    await flush();
    expect(held(a).pod).toBe("p0");
    expect(b.result).toBeUndefined();
    await held(a).release();
    await flush();
    expect(held(b).pod).toBe("p0");
    expect(held(b).fence).toBe(2);
    expect(c.result).toBeUndefined();
    await held(b).release();
    await flush();
    expect(held(c).fence).toBe(3);
    await clock.advance(1);
    await manager.shutdown();
  });

  it("after QUEUE_TIMEOUT_SECONDS a waiter gets queue_timeout with Retry-After = TTL/3, and leaves the queue", async () => {
    const { acquire, held, clock, types, manager } = setup(["p0"]);
    held((await flushThen(acquire("a"))) as { result?: Result<LeaseHandle> });
    const b = acquire("b");
    await clock.advance(14_999);
    expect(b.result).toBeUndefined();
    expect(manager.queueDepth).toBe(1);
    await clock.advance(1);
    expect(b.result?.ok).toBe(false);
    if (b.result && !b.result.ok) {
      expect(b.result.error.code).toBe("queue_timeout");
      expect(b.result.error.retryAfterSeconds).toBe(15);
    }
    expect(types("b")).toEqual(["queue.entered", "queue.timeout", "queue.left"]);
    expect(manager.queueDepth).toBe(0);
    await manager.shutdown();
  });

  it("never hands out a pod without an IP, even one that says Ready: it waits for one with an address", async () => {
    const { acquire, held, store, clock, manager } = setup(["p0", "p1"]);
    for (const name of ["p0", "p1"])
      store.pods.observe({
        metadata: { name },
        status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }] },
      });
    const a = acquire("a");
    await clock.advance(1_000);
    expect(a.result).toBeUndefined();
    store.pods.observe({
      metadata: { name: "p1" },
      status: { phase: "Running", podIP: "127.0.1.3", conditions: [{ type: "Ready", status: "True" }] },
    });
    await flush();
    expect(held(a)).toMatchObject({ pod: "p1", podIP: "127.0.1.3" });
    await manager.shutdown();
  });

  it("skips a tenant at its cap without reordering the others (FIFO among the eligible)", async () => {
    const { acquire, held, manager } = setup(["p0", "p1"], { tenantMaxLeases: 1 });
    const hog1 = await flushThen(acquire("hog-1", "hog"));
    const hog2 = acquire("hog-2", "hog");
    const small = acquire("small-1", "small");
    await flush();
    expect(held(hog1).pod).toBeDefined();
    expect(hog2.result).toBeUndefined();
    expect(held(small).pod).not.toBe(held(hog1).pod);
    await held(hog1).release();
    await flush();
    expect(held(hog2).tenant).toBe("hog");
    await manager.shutdown();
  });

  it("a freed pod goes to the waiting tenant holding the fewest leases, FIFO within a tenant", async () => {
    const { acquire, held, manager } = setup(["p0", "p1", "p2"]);
    const a1 = await flushThen(acquire("a-1", "a"));
    const a2 = await flushThen(acquire("a-2", "a"));
    const b1 = await flushThen(acquire("b-1", "b"));
    // Queue: a-3, a-4 (tenant a holds 2), then b-2 (tenant b holds 1), c-1 (tenant c holds none).
    const a3 = acquire("a-3", "a");
    const a4 = acquire("a-4", "a");
    const b2 = acquire("b-2", "b");
    const c1 = acquire("c-1", "c");
    await flush();
    expect(manager.demand()).toMatchObject({ queued: 4, tenants: { a: 2, b: 1, c: 1 } });
    await held(a1).release();
    await flush();
    expect(held(c1).pod).toBe(held(a1).pod); // the newest waiter, but its tenant holds nothing
    await held(a2).release();
    await flush();
    expect(held(a3).pod).toBe(held(a2).pod); // a now holds 0, b 1: a's oldest waiter (FIFO within a)
    expect(b2.result).toBeUndefined();
    await held(b1).release();
    await flush();
    expect(held(b2).pod).toBe(held(b1).pod); // b holds 0, a and c 1 each: b before a-4 although a-4 came first
    expect(a4.result).toBeUndefined();
    await manager.shutdown();
  });

  it("with TENANT_MAX_LEASES set, a caller kept waiting by its own tenant's cap gets tenant_lease_limit", async () => {
    const { acquire, held, clock, manager } = setup(["p0", "p1"], { tenantMaxLeases: 1 });
    held(await flushThen(acquire("hog-1", "hog")));
    const hog2 = acquire("hog-2", "hog");
    await flush();
    expect(manager.demand().queued).toBe(0); // a capped waiter needs no new pod
    await clock.advance(15_000);
    await flush();
    expect(hog2.result?.ok === false && hog2.result.error.code).toBe("tenant_lease_limit");
    expect(hog2.result?.ok === false && hog2.result.error.retryAfterSeconds).toBe(15);
    await manager.shutdown();
  });

  it("a tenant holds at most its share of the pool: the rest serves another tenant at once", async () => {
    // 8 pods, share 6 (what max(POOL_SIZE, 75% of POOL_MAX_PODS) gives for POOL_MAX_PODS 8).
    const pods = Array.from({ length: 8 }, (_, i) => `p${i}`);
    const { acquire, held, clock, manager } = setup(pods, { tenantShareLeases: 6 });
    // A lone tenant's burst of 10 long commands: 6 run, 4 wait, and need no new pod.
    const hog = Array.from({ length: 10 }, (_, i) => acquire(`hog-${i}`, "hog"));
    await flush();
    expect(hog.filter((h) => h.result?.ok).length).toBe(6);
    expect(manager.demand()).toMatchObject({ queued: 0, tenants: { hog: 4 } });
    // Another tenant arriving later is served from what the share left, without waiting.
    const other = acquire("other-1", "other");
    await flush();
    expect(held(other).tenant).toBe("other");
    // The hog's waiters time out with its own limit, not with the pool's.
    await clock.advance(15_000);
    await flush();
    const refused = hog.filter((h) => h.result && !h.result.ok);
    expect(refused.length).toBe(4);
    for (const r of refused) {
      expect(r.result?.ok === false && r.result.error.code).toBe("tenant_lease_limit");
      expect(r.result?.ok === false && r.result.error.message).toMatch(/TENANT_POOL_SHARE_PERCENT/);
    }
    await manager.shutdown();
  });

  it("TENANT_MAX_LEASES below the share is the cap that holds (and is named)", async () => {
    const { acquire, clock, manager } = setup(["p0", "p1", "p2"], {
      tenantShareLeases: 2,
      tenantMaxLeases: 1,
    });
    const a = [acquire("a-0", "a"), acquire("a-1", "a")];
    await flush();
    expect(a[0]!.result?.ok).toBe(true);
    await clock.advance(15_000);
    await flush();
    expect(a[1]!.result?.ok === false && a[1]!.result.error.message).toMatch(/TENANT_MAX_LEASES/);
    await manager.shutdown();
  });

  it("a pod freed by another replica is left to that replica for the hand-off grace, then taken", async () => {
    const { store, acquire, held, clock, manager } = setup(["p0"], { handoffGraceMs: 50 });
    store.rivalWrite("p0", { holderIdentity: "agent-b/r9", leaseTransitions: 1 });
    const a = acquire("a");
    await flush();
    expect(a.result).toBeUndefined();
    store.rivalWrite("p0", { holderIdentity: undefined });
    await clock.advance(49);
    expect(a.result).toBeUndefined();
    await clock.advance(2);
    expect(held(a).fence).toBe(2);
    await manager.shutdown();
  });

  it("a lost compare-and-swap emits lease.conflict, skips that pod and serves the waiter from the next", async () => {
    const { store, acquire, held, events, manager } = setup(["p0", "p1"]);
    store.failNext.set("p0", 409);
    const a = acquire("a");
    await flush();
    expect(held(a).pod).toBe("p1");
    expect(events.filter((e) => e.type === "lease.conflict").map((e) => e.pod)).toEqual(["p0"]);
    expect(manager.stats.conflicts).toBe(1);
    await manager.shutdown();
  });

  it("a CAS that fails without a verdict (outage, 5xx) is retried shortly, not shunned until the Lease changes", async () => {
    const { store, acquire, held, clock, manager } = setup(["p0"]);
    store.failNext.set("p0", 500);
    const a = acquire("a");
    await flush();
    expect(a.result).toBeUndefined();
    // Nothing touches p0's Lease after the failure; the waiter still gets it.
    await clock.advance(300);
    expect(held(a).pod).toBe("p0");
    await manager.shutdown();
  });

  it("renews every TTL/3 and marks the lease lost when renewals fail until it would expire", async () => {
    const { store, acquire, held, clock, types, manager } = setup(["p0"], { leaseTtlSeconds: 3 });
    const h = held(await flushThen(acquire("a")));
    await clock.advance(1_000);
    expect(types("a")).toContain("lease.renewed");
    // The API server's own words (here an etcd error naming its host) are for the log only.
    store.failMessage = "etcdserver: request timed out on etcd-2.corp.internal";
    store.failNext.set("p0", 500);
    await clock.advance(1_000);
    expect(h.lost.aborted).toBe(false); // one failed renewal: still within the TTL
    store.failNext.set("p0", 500);
    await clock.advance(1_000);
    expect(h.lost.aborted).toBe(true);
    expect(types("a")).toContain("lease.lost");
    expect(h.lost.reason).toMatchObject({ code: "lease_lost", message: "lease on p0 lost: renewal failing" });
    await manager.shutdown();
  });

  it("a caller that aborts while queued gets request_cancelled and leaves the queue", async () => {
    const { acquire, held, types, manager } = setup(["p0"]);
    held(await flushThen(acquire("a")));
    const ac = new AbortController();
    const b = acquire("b", "t1", ac.signal);
    await flush();
    ac.abort();
    await flush();
    expect(b.result?.ok === false && b.result.error.code).toBe("request_cancelled");
    expect(types("b")).toEqual(["queue.entered", "queue.left"]);
    expect(manager.queueDepth).toBe(0);
    await manager.shutdown();
  });

  it("a pod is not handed out again before its scrub finished (release returns before it)", async () => {
    let finishScrub = () => {};
    const scrubbed = new Promise<void>((resolve) => {
      finishScrub = resolve;
    });
    let scrubs = 0;
    const slowScrubber: Scrubber = {
      scrub: async () => {
        scrubs++;
        await scrubbed;
        return ok({ killed: 0, removed: 0 });
      },
    };
    const { acquire, held, manager } = setup(["p0"], { scrubber: slowScrubber });
    const a = held(await flushThen(acquire("a")));
    const b = acquire("b");
    const released = a.release();
    await flush();
    expect(scrubs).toBe(1);
    expect(b.result).toBeUndefined();
    finishScrub();
    await released;
    await flush();
    expect(held(b).pod).toBe("p0");
    await manager.shutdown();
  });
});

async function flushThen<T>(s: T): Promise<T> {
  await flush();
  return s;
}

describe("RECYCLE=reuse-same-tenant (fake clock)", () => {
  /** A scrubber that counts, and fails when told to. */
  function scrubberOf(fail = () => false) {
    const scrubbed: string[] = [];
    const scrubber: Scrubber = {
      scrub: async (t) => {
        scrubbed.push(t.pod);
        return fail()
          ? err(new AppError("sandbox_failed", `${t.pod} is not clean after reset`))
          : ok({ killed: 1, removed: 2 });
      },
    };
    return { scrubber, scrubbed };
  }

  /** Stands in for the pool controller: every pod deleted is followed by a fresh one. */
  function refill(store: MemoryPoolStore) {
    let n = 100;
    store.pods.onChange((c) => {
      if (c.type === "delete") queueMicrotask(() => store.addPod(`fresh-${n++}`));
    });
  }

  const deleted = (store: MemoryPoolStore) =>
    store.writes.filter((w) => w.what === "delete pod").map((w) => w.name);

  it("a waiter of the same tenant gets the scrubbed pod straight away: fence + 1, kept for the tenant, never freed", async () => {
    const { scrubber, scrubbed } = scrubberOf();
    const { store, acquire, held, events, manager } = setup(["p0"], {
      recycle: "reuse-same-tenant",
      scrubber,
    });
    const a1 = held(await flushThen(acquire("a-1", "A")));
    const a2 = acquire("a-2", "A");
    await flush();
    expect(a2.result).toBeUndefined();
    await a1.release();
    await flush();
    expect(held(a2).pod).toBe("p0");
    expect(held(a2).fence).toBe(a1.fence + 1);
    expect(scrubbed).toEqual(["p0"]);
    expect(deleted(store)).toEqual([]);
    // The Lease went from a-1 to a-2 in one CAS: it was never free for anyone else to take.
    expect(store.writes.map((w) => w.what)).not.toContain("free lease");
    const lease = store.leases.get("p0");
    expect(lease?.metadata?.annotations?.["pi-sandbox-runtime/kept-for-tenant"]).toBe("A");
    expect(lease?.spec?.holderIdentity).toBe("agent-a/a-2");
    const released = events.find((e) => e.type === "lease.released" && e.requestId === "a-1");
    expect(released?.data).toMatchObject({ recycle: "scrub", handedTo: "a-2", killed: 1, removed: 2 });
    // Released before the next holder acquired it (the dashboard and metrics read them in order).
    const order = events.filter((e) => e.pod === "p0" && e.type.startsWith("lease.")).map((e) => e.type);
    expect(order).toEqual(["lease.acquired", "lease.released", "lease.acquired"]);
    // With nobody of A waiting, the kept pod is replaced, not freed.
    await held(a2).release();
    await flush();
    expect(deleted(store)).toEqual(["p0"]);
    await manager.shutdown();
  });

  // Over one pod the fair queue's next waiter is always the other tenant (replace every time);
  // over two, each tenant's next waiter follows its own release (reuse within the tenant).
  it.each([1, 2])(
    "interleaved tenants A, B, A, B over %i pod(s): a pod last used by A never goes to B",
    async (n) => {
      const { scrubber, scrubbed } = scrubberOf();
      const pods = Array.from({ length: n }, (_, i) => `p${i}`);
      const { store, acquire, held, manager } = setup(pods, { recycle: "reuse-same-tenant", scrubber });
      refill(store);
      const order = ["A", "B", "A", "B", "A", "B", "A", "B"];
      const calls = order.map((t, i) => acquire(`${t}-${i}`, t));
      await flush();
      const tenantsOf = new Map<string, Set<string>>();
      const served: LeaseHandle[] = [];
      // Release in arrival order whatever was served, until every call was served once.
      for (let i = 0; i < order.length; i++) {
        const h = held(calls[i] as { result?: Result<LeaseHandle> });
        served.push(h);
        const seen = tenantsOf.get(h.pod) ?? new Set<string>();
        seen.add(h.tenant);
        tenantsOf.set(h.pod, seen);
        await h.release();
        await flush();
      }
      const shared = [...tenantsOf].filter(([, tenants]) => tenants.size > 1).map(([pod]) => pod);
      expect(shared).toEqual([]);
      // Every reuse was a scrub: two pods served all eight calls, each within its tenant.
      expect(tenantsOf.size).toBe(n === 1 ? order.length : 2);
      expect(scrubbed.length).toBe(order.length - tenantsOf.size);
      await manager.shutdown();
    },
  );

  it("the same-tenant waiter left during the scrub and another tenant's is next: the pod is replaced, B never gets it", async () => {
    let finishScrub = () => {};
    const gate = new Promise<void>((resolve) => {
      finishScrub = resolve;
    });
    const slow: Scrubber = {
      scrub: async () => {
        await gate;
        return ok({ killed: 0, removed: 0 });
      },
    };
    const { store, acquire, held, manager } = setup(["p0"], { recycle: "reuse-same-tenant", scrubber: slow });
    refill(store);
    const a1 = held(await flushThen(acquire("a-1", "A")));
    const ac = new AbortController();
    acquire("a-2", "A", ac.signal);
    await flush();
    const released = a1.release();
    await flush();
    ac.abort();
    const b1 = acquire("b-1", "B");
    await flush();
    expect(b1.result).toBeUndefined();
    finishScrub();
    await released;
    await flush();
    await flush();
    expect(deleted(store)).toEqual(["p0"]);
    expect(held(b1).pod).not.toBe("p0");
    expect(held(b1).pod).toMatch(/^fresh-/);
    await manager.shutdown();
  });

  it("a failed scrub replaces the pod; the same-tenant waiter gets a fresh one", async () => {
    const { scrubber, scrubbed } = scrubberOf(() => true);
    const { store, acquire, held, events, manager } = setup(["p0"], {
      recycle: "reuse-same-tenant",
      scrubber,
    });
    refill(store);
    const a1 = held(await flushThen(acquire("a-1", "A")));
    const a2 = acquire("a-2", "A");
    await flush();
    await a1.release();
    await flush();
    await flush();
    expect(scrubbed).toEqual(["p0"]);
    expect(deleted(store)).toEqual(["p0"]);
    expect(held(a2).pod).toMatch(/^fresh-/);
    const released = events.find((e) => e.type === "lease.released" && e.requestId === "a-1");
    expect(released?.data).toMatchObject({ recycle: "replace", scrubFailed: "p0 is not clean after reset" });
    await manager.shutdown();
  });

  it("a hand-off CAS that fails replaces the pod and the waiter keeps its place", async () => {
    const { scrubber } = scrubberOf();
    const { store, acquire, held, manager } = setup(["p0"], { recycle: "reuse-same-tenant", scrubber });
    refill(store);
    const a1 = held(await flushThen(acquire("a-1", "A")));
    const a2 = acquire("a-2", "A");
    await flush();
    store.failNext.set("p0", 500);
    await a1.release();
    await flush();
    await flush();
    expect(deleted(store)).toEqual(["p0"]);
    expect(held(a2).pod).toMatch(/^fresh-/);
    await manager.shutdown();
  });

  it("a waiter that leaves during the hand-off CAS: the kept pod is replaced, not freed for another tenant", async () => {
    const { scrubber } = scrubberOf();
    const { store, acquire, held, manager } = setup(["p0"], { recycle: "reuse-same-tenant", scrubber });
    refill(store);
    const a1 = held(await flushThen(acquire("a-1", "A")));
    const ac = new AbortController();
    acquire("a-2", "A", ac.signal);
    await flush();
    // The caller goes away while the Lease is being moved to it (the CAS then wins all the same).
    const replaceLease = store.replaceLease.bind(store);
    store.replaceLease = (body, timeoutMs, what) => {
      if (what === "hand lease over") ac.abort();
      return replaceLease(body, timeoutMs, what);
    };
    const b1 = acquire("b-1", "B");
    await a1.release();
    await flush();
    await flush();
    expect(store.writes.map((w) => w.what)).toContain("hand lease over");
    expect(store.writes.map((w) => w.what)).not.toContain("free lease");
    expect(deleted(store)).toEqual(["p0"]);
    expect(held(b1).pod).toMatch(/^fresh-/);
    await manager.shutdown();
  });

  it("a free pod kept for a tenant is no candidate for anyone: it is only ever handed on directly", async () => {
    const { store, acquire, manager } = setup(["p0"], { recycle: "reuse-same-tenant" });
    const l = store.leases.get("p0");
    store.leases.observe({
      ...l,
      metadata: { ...l?.metadata, annotations: { "pi-sandbox-runtime/kept-for-tenant": "A" } },
    });
    const b = acquire("b-1", "B");
    const a = acquire("a-1", "A");
    await flush();
    expect(b.result).toBeUndefined();
    expect(a.result).toBeUndefined();
    await manager.shutdown();
  });
});
