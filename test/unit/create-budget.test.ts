/**
 * The pool leader's create budget (cluster-agent/pool/create-budget.ts) on a fake clock: what a
 * leader publishes on its leader Lease and may have in flight, and what a new leader reserves
 * against POOL_MAX_PODS from its predecessor's record; then the controller applying both. The
 * handover against devcluster with two replicas is in test/integration/pool-handover.test.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { KubeClients } from "../../cluster-agent/k8s/client.ts";
import { PoolController } from "../../cluster-agent/pool/controller.ts";
import { CreateBudget, type CreateLoad } from "../../cluster-agent/pool/create-budget.ts";
import type { PoolEvent } from "../../shared/api.ts";
import { MemoryPoolStore } from "../support/memory-pool-store.ts";

const TIMEOUT = 1_000;
const ACTS_FOR = 2_000;

function budgetOn(
  clock: { t: number },
  load: CreateLoad = { inFlight: 0, want: 4, capRoom: 1_000 },
  maxPods = 1_000,
) {
  const b = new CreateBudget(() => clock.t);
  const raised: number[] = [];
  b.bind({
    callTimeoutMs: TIMEOUT,
    maxInFlight: 32,
    maxPods,
    load: () => load,
    onRaised: () => void raised.push(clock.t),
  });
  return { b, load, raised };
}

const record = (v: string) => JSON.parse(v) as { inFlight: number; landsWithinMs: number };

describe("create budget: what the leader publishes and keeps to", () => {
  it("allows no create before a budget has landed on the record, then as many as it says", () => {
    const clock = { t: 0 };
    const { b, raised } = budgetOn(clock);
    expect(b.room(0)).toBe(0);
    const v = b.next(ACTS_FOR);
    // Twice the start limit (headroom for its growth), and how long its creates may still land:
    // the renew deadline plus three call timeouts.
    expect(record(v)).toEqual({ inFlight: 8, landsWithinMs: ACTS_FOR + 3 * TIMEOUT });
    expect(b.room(0)).toBe(0); // sent, not landed: the record may still hold the old one
    b.landed(v, clock.t + ACTS_FOR);
    expect(raised).toEqual([0]);
    expect(b.room(0)).toBe(8);
    expect(b.room(5)).toBe(3);
    expect(b.room(9)).toBe(0);
  });

  it("publishes no more headroom than POOL_MAX_PODS leaves room for: a successor would reserve it all", () => {
    const clock = { t: 0 };
    const { b } = budgetOn(clock, { inFlight: 2, want: 8, capRoom: 3 });
    // Twice the start limit would be 16; the cap leaves 3 more beside the 2 in flight.
    expect(record(b.next(ACTS_FOR)).inFlight).toBe(5);
  });

  it("lowers its limit when it sends a lower budget (a write whose answer is lost may have landed), never below what is in flight", () => {
    const clock = { t: 0 };
    const { b, load } = budgetOn(clock, { inFlight: 0, want: 8, capRoom: 1_000 });
    b.landed(b.next(ACTS_FOR), ACTS_FOR);
    expect(b.room(0)).toBe(16);
    // The start limit was cut to 1 while 5 creates are in flight: the next write says 5.
    load.want = 1;
    load.inFlight = 5;
    const lower = b.next(ACTS_FOR);
    expect(record(lower).inFlight).toBe(5);
    expect(b.room(5)).toBe(0); // at once, before that write's answer
    // A raise counts only once it landed.
    load.want = 8;
    const higher = b.next(ACTS_FOR);
    expect(record(higher).inFlight).toBe(16);
    expect(b.room(5)).toBe(0);
    b.landed(higher, ACTS_FOR);
    expect(b.room(5)).toBe(11);
  });

  it("starts nothing after the renew deadline of its last landed write, nor after giving the lease up", () => {
    const clock = { t: 0 };
    const { b, load } = budgetOn(clock);
    b.landed(b.next(ACTS_FOR), ACTS_FOR);
    clock.t = ACTS_FOR - 1;
    expect(b.mayStart()).toBe(true);
    clock.t = ACTS_FOR;
    expect(b.mayStart()).toBe(false);
    expect(b.room(0)).toBe(0);
    // Renewed: acting again. Then given up: what is in flight is what the successor must count,
    // and it lands within three call timeouts (no more creates start).
    b.landed(b.next(ACTS_FOR), clock.t + ACTS_FOR);
    expect(b.mayStart()).toBe(true);
    load.inFlight = 3;
    const last = b.next(0);
    expect(record(last)).toEqual({ inFlight: 3, landsWithinMs: 3 * TIMEOUT });
    expect(b.mayStart()).toBe(false);
  });
});

describe("create budget: a new leader's reservation of its predecessor's creates", () => {
  it("reserves the predecessor's budget until its window has passed since we first saw the record", () => {
    const clock = { t: 50_000 };
    const { b } = budgetOn(clock);
    b.takeover(JSON.stringify({ inFlight: 6, landsWithinMs: 9_000 }), 45_000, ACTS_FOR);
    expect(b.reserved()).toBe(6);
    clock.t = 53_999;
    expect(b.reserved()).toBe(6);
    clock.t = 54_000;
    expect(b.reserved()).toBe(0);
  });

  it("counts down as pods it did not create appear (pods present when it first looked and its own do not count)", () => {
    const clock = { t: 0 };
    const { b } = budgetOn(clock);
    b.takeover(JSON.stringify({ inFlight: 3, landsWithinMs: 60_000 }), 0, ACTS_FOR);
    b.sawPods(["old-1", "old-2"]);
    b.sent("mine-1");
    b.sawPods(["old-1", "old-2", "mine-1"]);
    expect(b.reserved()).toBe(3);
    b.sawPods(["old-1", "old-2", "mine-1", "theirs-1"]);
    b.sawPods(["old-1", "mine-1", "theirs-1", "theirs-2"]); // a pod going away changes nothing
    expect(b.reserved()).toBe(1);
    b.sawPods(["theirs-1", "theirs-2", "theirs-3", "theirs-4"]);
    expect(b.reserved()).toBe(0);
  });

  it("never reserves more than POOL_MAX_PODS leaves beside the pods it first saw (the predecessor kept its creates within the cap too)", () => {
    const clock = { t: 0 };
    const { b } = budgetOn(clock, { inFlight: 0, want: 4, capRoom: 1_000 }, 12);
    // A record without a budget would reserve the most a leader may have in flight (32)…
    b.takeover(undefined, 0, 10_000);
    expect(b.reserved()).toBe(32);
    // …but with 6 pods there, at most 6 more can land.
    b.sawPods(["p1", "p2", "p3", "p4", "p5", "p6"]);
    expect(b.reserved()).toBe(6);
    b.sawPods(["p1", "p2", "p3", "p4", "p5", "p6", "theirs-1", "theirs-2"]);
    expect(b.reserved()).toBe(4);
  });

  it("a record without a budget (an older agent) reserves the most a leader may have in flight, for its renew deadline and the landing time", () => {
    const clock = { t: 0 };
    const { b } = budgetOn(clock);
    b.takeover(undefined, 0, 10_000);
    expect(b.reserved()).toBe(32);
    clock.t = 10_000 + 3 * TIMEOUT - 1;
    expect(b.reserved()).toBe(32);
    clock.t += 1;
    expect(b.reserved()).toBe(0);
    b.takeover('{"inFlight":"many"}', clock.t, 10_000);
    expect(b.reserved()).toBe(32);
  });

  it("publishes what it inherited on top of its own, for as long as the inheritance lasts: the chain of leaders stays covered", () => {
    const clock = { t: 0 };
    const { b } = budgetOn(clock);
    b.takeover(JSON.stringify({ inFlight: 5, landsWithinMs: 600_000 }), 0, ACTS_FOR);
    const v = b.next(ACTS_FOR);
    expect(record(v)).toEqual({ inFlight: 5 + 8, landsWithinMs: 600_000 });
    b.landed(v, ACTS_FOR);
    // Its own creates get only what the inheritance leaves.
    expect(b.room(0)).toBe(8);
  });
});

describe("pool controller with a create budget (fake clock, in-memory store)", () => {
  let controller: PoolController | undefined;
  /** Creates the fake API server has not answered yet. */
  const hanging: Array<{ name: string; answer: (ok: boolean) => void }> = [];
  afterEach(async () => {
    for (const h of hanging.splice(0)) h.answer(false);
    await controller?.stop();
    controller = undefined;
  });

  /**
   * A controller whose creates hang until the test answers them (a loaded API server), on the fake
   * clock; every reading of the clock is counted (each reconcile reads it).
   */
  function start(clock: { t: number }, store: MemoryPoolStore, poolSize: number, maxPods: number) {
    const budget = new CreateBudget(() => clock.t);
    const sent: string[] = [];
    const events: PoolEvent[] = [];
    const bus = new EventBus("agent-a");
    bus.on((e) => events.push(e));
    const counters = { renewals: 0, readings: 0 };
    controller = new PoolController({
      clients: {
        core: {
          createNamespacedPod: (p: { body: { metadata?: { name?: string } } }) => {
            const name = p.body.metadata?.name ?? "";
            sent.push(name);
            return new Promise((resolve, reject) =>
              hanging.push({
                name,
                answer: (ok) => {
                  if (!ok) return reject(new DOMException("aborted due to timeout", "TimeoutError"));
                  // As the API server answers: the pod exists (in the cache too).
                  const pod = { metadata: { name, uid: name }, status: { phase: "Pending" } };
                  store.pods.observe(pod);
                  resolve(pod);
                },
              }),
            );
          },
        },
        coordination: {
          createNamespacedLease: (p: { body: { metadata?: { name?: string } } }) =>
            Promise.resolve({ ...p.body, metadata: { ...p.body.metadata, resourceVersion: "1" } }),
        },
      } as unknown as KubeClients,
      caches: store,
      bus,
      log: { warn: () => undefined },
      namespace: "ns",
      poolSize,
      maxPods,
      leaseTtlSeconds: 45,
      podReadyTimeoutSeconds: 60,
      podName: () => `sandbox-${sent.length}`,
      podTemplate: (name) => ({ metadata: { name } }),
      requestTimeoutMs: TIMEOUT,
      orphanGraceMs: 60_000,
      resyncMs: 5,
      budget,
      renewLeader: () => void counters.renewals++,
      now: () => {
        counters.readings++;
        return clock.t;
      },
    });
    return { budget, sent, events, counters };
  }

  /** Many reconciles later (each reads the clock): what they would have done, they did. */
  async function manyReconciles(counters: { readings: number }): Promise<void> {
    const after = counters.readings;
    await vi.waitFor(() => expect(counters.readings).toBeGreaterThan(after + 100), { timeout: 5_000 });
  }

  it("starts no create beyond the budget on its record: asks for an early renewal, grows once it landed, sends no retry after the renew deadline", async () => {
    const clock = { t: 0 };
    const { budget, sent, events, counters } = start(clock, new MemoryPoolStore(), 8, 64);
    // A record of 2 landed (an earlier renewal); the policy would start 4 at once.
    budget.landed(JSON.stringify({ inFlight: 2, landsWithinMs: 0 }), ACTS_FOR);
    controller?.start();
    // One decision: the early renewal is asked for before its creates are sent.
    await vi.waitFor(() => expect(counters.renewals).toBeGreaterThan(0), { timeout: 5_000 });
    expect(sent).toHaveLength(2);
    expect(events).toContainEqual(
      expect.objectContaining({
        type: "pool.scale",
        data: expect.objectContaining({ reason: "leader budget", create: 2 }),
      }),
    );
    // The early renewal lands the next budget (twice the start limit); the two pods come up
    // (starting): two more start, the policy's start limit of 4.
    budget.landed(budget.next(ACTS_FOR), ACTS_FOR);
    for (const h of hanging.splice(0)) h.answer(true);
    await vi.waitFor(() => expect(sent).toHaveLength(4), { timeout: 5_000 });
    // Past the renew deadline: those two time out, and their retries are not sent.
    clock.t = ACTS_FOR;
    for (const h of hanging.splice(0)) h.answer(false);
    await vi.waitFor(() => expect(controller?.podCounts.starting).toBe(4), { timeout: 5_000 });
    await manyReconciles(counters);
    expect(sent).toHaveLength(4);
    // They stay counted (they may still land): 2 pods + 2 unanswered.
    expect(controller?.podCounts.starting).toBe(4);
  });

  it("a settled pool publishes only what is in flight (a successor of an idle leader reserves nothing); a short one its headroom", async () => {
    const clock = { t: 0 };
    const store = new MemoryPoolStore();
    for (let i = 0; i < 8; i++) store.addPod(`warm-${i}`);
    const { budget, sent, counters } = start(clock, store, 8, 64);
    budget.landed(JSON.stringify({ inFlight: 8, landsWithinMs: 0 }), 60_000);
    controller?.start();
    await manyReconciles(counters);
    expect(sent).toEqual([]);
    expect(record(budget.next(ACTS_FOR)).inFlight).toBe(0);
    // Short of two pods: room for twice the start limit of 4.
    store.pods.forget("warm-0");
    store.pods.forget("warm-1");
    await manyReconciles(counters);
    expect(record(budget.next(ACTS_FOR)).inFlight).toBe(8);
  });

  it("a new leader counts its predecessor's budget against POOL_MAX_PODS until pods it did not create appear or the window ends", async () => {
    const clock = { t: 0 };
    const store = new MemoryPoolStore();
    // Five pods held by sandboxes: the warm target wants 8 more, the cap of 8 leaves room for 3.
    for (let i = 0; i < 5; i++) store.addSandbox(`old-${i}`, "t", `sb-${i}`, 3_600);
    const { budget, sent, counters } = start(clock, store, 8, 8);
    budget.takeover(JSON.stringify({ inFlight: 3, landsWithinMs: 10_000 }), 0, ACTS_FOR);
    budget.landed(budget.next(ACTS_FOR), 60_000);
    controller?.start();
    await manyReconciles(counters);
    // 5 pods + 3 of the predecessor's creates that may still land = the cap: nothing started.
    expect(sent).toEqual([]);
    expect(controller?.podCounts.total).toBe(8);
    // One of them landed: it counts as a pod now, the reservation is one less.
    store.addPod("theirs-0");
    await manyReconciles(counters);
    expect(sent).toEqual([]);
    expect(controller?.podCounts.total).toBe(8);
    // The window has passed: the two that never came no longer count; two pods fill the cap.
    clock.t = 10_000;
    await vi.waitFor(() => expect(sent).toHaveLength(2), { timeout: 5_000 });
    expect(controller?.podCounts.total).toBe(6);
  });
});
