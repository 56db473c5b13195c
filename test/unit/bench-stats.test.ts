import { describe, expect, it } from "vitest";
import { closedLoop } from "../../bench/calls.ts";
import { pairInOrder } from "../../bench/pod-watch.ts";
import { percentile, summarize } from "../../bench/stats.ts";

describe("bench percentiles", () => {
  it("uses the nearest rank on sorted samples, whatever the input order", () => {
    const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
    expect(percentile(xs, 50)).toBe(5);
    expect(percentile(xs, 90)).toBe(9);
    expect(percentile(xs, 99)).toBe(10);
    expect(percentile(xs, 100)).toBe(10);
    expect(percentile(xs, 0)).toBe(1);
    expect(percentile(xs, 10)).toBe(1);
    expect(percentile(xs, 11)).toBe(2);
  });

  it("p99 of 100 samples is the 99th, not the maximum", () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 50)).toBe(50);
  });

  it("has no percentile for no samples, and does not sort the caller's array", () => {
    expect(percentile([], 50)).toBeUndefined();
    const xs = [3, 1, 2];
    percentile(xs, 50);
    expect(xs).toEqual([3, 1, 2]);
  });

  it("summarises with rounding to microseconds", () => {
    const s = summarize([1.23456, 2, 3, 4]);
    expect(s).toEqual({ n: 4, p50: 2, p99: 4, mean: 2.559, min: 1.235, max: 4 });
    expect(summarize([]).n).toBe(0);
    expect(Number.isNaN(summarize([]).p50)).toBe(true);
  });
});

describe("pairing deletions with the next Ready pod", () => {
  it("pairs each start with the first unused end not before it", () => {
    expect(pairInOrder([0, 10, 20], [5, 12, 40])).toEqual([5, 2, 20]);
    // An end before any start (a pod that was already coming up) is skipped.
    expect(pairInOrder([10, 11], [3, 15, 16])).toEqual([5, 5]);
    // Starts with no end yet are left out rather than invented.
    expect(pairInOrder([0, 1, 2], [4])).toEqual([4]);
  });
});

describe("closed loop", () => {
  it("runs concurrency x perClient calls, at most `concurrency` at a time, and keeps errors", async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await closedLoop({
      concurrency: 3,
      perClient: 4,
      deadlineMs: 10_000,
      call: async (client, i) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 2));
        inFlight--;
        if (client === 1 && i === 2) throw new Error("boom");
        return `${client}:${i}`;
      },
    });
    expect(out.samples).toHaveLength(11);
    expect(out.errors).toEqual(["boom"]);
    expect(peak).toBe(3);
    expect(out.wallMs).toBeGreaterThan(0);
  });

  it("stops at the deadline", async () => {
    const out = await closedLoop({
      concurrency: 2,
      perClient: 1_000_000,
      deadlineMs: 50,
      call: () => new Promise((r) => setTimeout(() => r(1), 5)),
    });
    expect(out.samples.length).toBeLessThan(100);
    expect(out.samples.length).toBeGreaterThan(0);
  });
});
