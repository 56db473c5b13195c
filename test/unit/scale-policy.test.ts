/**
 * The elastic pool's decisions (cluster-agent/pool/scale-policy.ts) on a fake clock: warm target,
 * demand (queued + Little's law), the caps, scale-down after low demand, backoff on refusal; and
 * the decaying arrival rate it is fed with.
 */
import { describe, expect, it } from "vitest";
import { ScalePolicy, type ScalePolicyOptions } from "../../cluster-agent/pool/scale-policy.ts";
import { ArrivalRate } from "../../cluster-agent/pool-state/arrival-rate.ts";

const base: ScalePolicyOptions = {
  poolSize: 8,
  maxPods: 64,
  maxCreatePerSecond: 32,
  scaleDownAfterMs: 60_000,
  initialStartupMs: 1_000,
  // The cases below are about the other caps: the start limit gets its own.
  initialStartLimit: 64,
  maxStartLimit: 64,
};
const none = { queued: 0, arrivalsPerSecond: 0 };

describe("scale policy", () => {
  it("keeps POOL_SIZE free pods: held pods do not count, starting ones do", () => {
    const p = new ScalePolicy(base);
    expect(p.decide(0, { free: 8, starting: 0, total: 20 }, none)).toMatchObject({
      create: 0,
      remove: 0,
      reason: "steady",
    });
    // 12 held + 5 free + 1 starting: 2 more for the warm target.
    expect(p.decide(1_000, { free: 5, starting: 1, total: 18 }, none)).toMatchObject({
      create: 2,
      reason: "warm target",
    });
  });

  it("adds no pod while pods wait for room (Unschedulable), and grows again once they are scheduled", () => {
    const p = new ScalePolicy(base);
    // 10 queued, 4 free, 6 starting of which 3 no node has room for: the queue would want more, but
    // another pod would only wait beside them.
    const full = p.decide(
      0,
      { free: 4, starting: 6, unschedulable: 3, total: 10 },
      { queued: 10, arrivalsPerSecond: 0 },
    );
    expect(full).toMatchObject({ create: 0, remove: 0, reason: "unschedulable" });
    // Scheduled now (starting, no longer unschedulable): growth resumes for the same demand.
    const room = p.decide(
      1_000,
      { free: 4, starting: 6, unschedulable: 0, total: 10 },
      { queued: 10, arrivalsPerSecond: 0 },
    );
    expect(room).toMatchObject({ create: 8, reason: "demand" });
    // Not short of pods: waiting pods change nothing (no removal of free pods on their account).
    expect(p.decide(2_000, { free: 8, starting: 1, unschedulable: 1, total: 9 }, none)).toMatchObject({
      create: 0,
      remove: 0,
      reason: "steady",
    });
  });

  it("grows for queued callers and for arrivals × start-up time, up to POOL_MAX_PODS", () => {
    const p = new ScalePolicy(base);
    // 10 queued, 12 arrivals/s × 1 s start-up → warm target max(8, 12) + 10 queued = 22, have 0.
    const d = p.decide(0, { free: 0, starting: 0, total: 8 }, { queued: 10, arrivalsPerSecond: 12 });
    expect(d).toMatchObject({ create: 22, wanted: 22, reason: "demand" });
    // Arrivals the warm pods already cover add nothing: 4/s × 1 s < POOL_SIZE.
    const covered = new ScalePolicy(base).decide(
      0,
      { free: 8, starting: 0, total: 8 },
      {
        queued: 0,
        arrivalsPerSecond: 4,
      },
    );
    expect(covered).toMatchObject({ create: 0, wanted: 8 });
    // 120 queued: capped by the pods left under POOL_MAX_PODS (64 − 8 held − 22 starting = 34)
    // and by one second's create budget (32 − 22 = 10 left after the first second's creates).
    const again = p.decide(0, { free: 0, starting: 22, total: 30 }, { queued: 120, arrivalsPerSecond: 0 });
    expect(again).toMatchObject({ create: 10, reason: "create rate" });
    const later = p.decide(
      2_000,
      { free: 0, starting: 32, total: 62 },
      { queued: 120, arrivalsPerSecond: 0 },
    );
    expect(later).toMatchObject({ create: 2, reason: "max pods" });
    const full = p.decide(3_000, { free: 0, starting: 34, total: 64 }, { queued: 120, arrivalsPerSecond: 0 });
    expect(full).toMatchObject({ create: 0, reason: "max pods" });
  });

  it("removes free pods above POOL_SIZE only after POOL_SCALE_DOWN_AFTER_SECONDS of low demand", () => {
    const p = new ScalePolicy(base);
    expect(p.decide(0, { free: 0, starting: 0, total: 0 }, { queued: 30, arrivalsPerSecond: 0 }).create).toBe(
      32,
    );
    // The burst is over: 30 free.
    expect(p.decide(1_000, { free: 30, starting: 0, total: 30 }, none)).toMatchObject({
      remove: 0,
      reason: "low demand",
    });
    // Demand comes back before the wait is over: the clock starts again.
    p.decide(30_000, { free: 30, starting: 0, total: 30 }, { queued: 1, arrivalsPerSecond: 0 });
    expect(p.decide(61_000, { free: 30, starting: 0, total: 30 }, none).remove).toBe(0);
    expect(p.decide(120_999, { free: 30, starting: 0, total: 30 }, none).remove).toBe(0);
    expect(p.decide(121_000, { free: 30, starting: 0, total: 30 }, none)).toMatchObject({
      remove: 22,
      reason: "scale down",
    });
    // Never below the free target, whatever is held.
    expect(p.decide(122_000, { free: 8, starting: 0, total: 50 }, none).remove).toBe(0);
  });

  it("a new leader (reset) or a lower POOL_SIZE scales down at once; the arrival term keeps pods", () => {
    const p = new ScalePolicy(base);
    p.reset(5_000);
    expect(p.decide(5_000, { free: 12, starting: 0, total: 12 }, none).remove).toBe(4);
    // 10 arrivals/s × 1 s start-up: wanted 10, so only 2 go.
    expect(
      p.decide(5_000, { free: 12, starting: 0, total: 12 }, { queued: 0, arrivalsPerSecond: 10 }).remove,
    ).toBe(2);
    p.setPoolSize(2, 6_000);
    expect(p.decide(6_000, { free: 8, starting: 0, total: 8 }, none).remove).toBe(6);
  });

  it("after a refused create it stops growing and backs off 1 s doubling to 30 s; a create resets it", () => {
    const p = new ScalePolicy(base);
    const short = { free: 0, starting: 0, total: 0 };
    expect(p.refused(0, "403: exceeded quota")).toEqual({ backoffMs: 1_000, fresh: true });
    // Creates in flight together fail together: one step.
    expect(p.refused(10, "403: exceeded quota")).toEqual({ backoffMs: 1_000, fresh: false });
    expect(p.decide(500, short, none)).toMatchObject({
      create: 0,
      reason: "backoff",
      backoffMs: 1_000,
      refusal: "403: exceeded quota",
    });
    expect(p.decide(1_000, short, none).create).toBe(8);
    const steps = [2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
    let t = 1_000;
    for (const want of steps) {
      expect(p.refused(t, "422: invalid").backoffMs).toBe(want);
      t += want;
    }
    p.created();
    expect(p.refused(t, "403").backoffMs).toBe(1_000);
  });

  it("learns the start-up time from observed pods", () => {
    const p = new ScalePolicy({ ...base, initialStartupMs: 1_000 });
    for (let i = 0; i < 30; i++) p.observeStartup(3_000, i * 1_000);
    expect(p.expectedStartupMs).toBeGreaterThan(2_900);
    p.observeStartup(Number.NaN, 31_000);
    expect(p.expectedStartupMs).toBeGreaterThan(2_900);
  });
});

describe("start limit", () => {
  const burst = { queued: 40, arrivalsPerSecond: 0 };

  it("starts a few pods at once, one more per fast start-up, half as many when start-ups slow down", () => {
    const p = new ScalePolicy({ ...base, initialStartLimit: undefined, maxStartLimit: undefined });
    expect(p.startConcurrency).toBe(4);
    expect(p.decide(0, { free: 0, starting: 0, total: 0 }, burst)).toMatchObject({
      create: 4,
      reason: "start limit",
    });
    // Nothing more while four are starting.
    expect(p.decide(100, { free: 0, starting: 4, total: 4 }, burst)).toMatchObject({ create: 0 });
    // Two turn Ready fast (the first one sets the reference): two more may start, plus one each.
    p.observeStartup(500, 600);
    p.observeStartup(600, 700);
    expect(p.startConcurrency).toBe(6);
    expect(p.decide(700, { free: 0, starting: 2, total: 4 }, burst)).toMatchObject({ create: 4 });
    // A start-up over twice the fastest: starts compete, the limit halves — once per wave.
    p.observeStartup(1_500, 2_000);
    expect(p.startConcurrency).toBe(3);
    p.observeStartup(1_600, 2_100);
    expect(p.startConcurrency).toBe(3);
    // A fastest start-up later (the cool-down is one fastest start-up), and still slow: halves again.
    p.observeStartup(1_700, 2_700);
    expect(p.startConcurrency).toBe(1);
    for (let i = 0; i < 5; i++) p.observeStartup(1_800, 3_000 + i * 1_000);
    expect(p.startConcurrency).toBe(1);
    // Never below one, never above its maximum (maxCreatePerSecond by default).
    for (let i = 0; i < 100; i++) p.observeStartup(400, 10_000 + i);
    expect(p.startConcurrency).toBe(32);
  });

  it("a slow API answer to a create halves it too", () => {
    const p = new ScalePolicy({ ...base, initialStartLimit: 8 });
    p.createAnswered(200, 0);
    expect(p.startConcurrency).toBe(8);
    p.createAnswered(2_500, 1_000);
    expect(p.startConcurrency).toBe(4);
    // The same overload seen by creates in flight together: one cut.
    p.createAnswered(2_500, 1_100);
    expect(p.startConcurrency).toBe(4);
  });

  it("a node that became slower for good is the new reference: the limit grows again", () => {
    const p = new ScalePolicy({ ...base, initialStartLimit: 4, maxStartLimit: 16 });
    p.observeStartup(300, 0);
    let t = 1_000;
    // Every start-up now takes 2 s (a busier node): at first each halves the limit...
    for (let i = 0; i < 3; i++, t += 5_000) p.observeStartup(2_000, t);
    expect(p.startConcurrency).toBe(1);
    // ...then the reference has drifted up to them, and the limit climbs again.
    for (let i = 0; i < 60; i++, t += 5_000) p.observeStartup(2_000, t);
    expect(p.startConcurrency).toBeGreaterThan(4);
  });
});

describe("arrival rate", () => {
  it("rises with a burst and decays (an outage's failures are never recorded, so nothing lingers)", () => {
    let now = 0;
    const r = new ArrivalRate(5_000, () => now);
    expect(r.perSecond()).toBe(0);
    for (let i = 0; i < 50; i++) r.record();
    expect(r.perSecond()).toBeCloseTo(10, 5);
    now = 5_000;
    expect(r.perSecond()).toBeCloseTo(10 / Math.E, 5);
    // Little's term while the burst lasts: 10/s × 1 s = 10 > POOL_SIZE keeps 10 warm; 15 s later the
    // rate has decayed below what POOL_SIZE covers and the surplus goes.
    now = 0;
    const p = new ScalePolicy(base);
    p.reset(now);
    const counts = { free: 10, starting: 0, total: 10 };
    expect(p.decide(now, counts, { queued: 0, arrivalsPerSecond: r.perSecond() }).remove).toBe(0);
    now = 15_000;
    expect(r.perSecond()).toBeLessThan(0.5);
    expect(p.decide(now, counts, { queued: 0, arrivalsPerSecond: r.perSecond() }).remove).toBe(2);
  });
});
