import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { ApiException } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { k8sFailure } from "../../cluster-agent/k8s/errors.ts";
import {
  formatMicroTime,
  microNow,
  microTimeString,
  toMicroTime,
} from "../../cluster-agent/k8s/microtime.ts";
import { isOlderVersion, jitteredBackoff } from "../../cluster-agent/k8s/watched-cache.ts";
import { freePodNames, rotate } from "../../cluster-agent/leases/candidates.ts";
import { percentile } from "../../cluster-agent/leases/stats.ts";
import { isLeaseFree, parseHolder, recordKey } from "../../cluster-agent/pool-state/lease-record.ts";
import { ObservedExpiry } from "../../cluster-agent/pool-state/observed-expiry.ts";

const readyPod = (name: string, extra: Partial<V1Pod["status"]> = {}): V1Pod => ({
  metadata: { name },
  status: { phase: "Running", podIP: "127.0.1.2", conditions: [{ type: "Ready", status: "True" }], ...extra },
});
const lease = (name: string, holder?: string, transitions = 0): V1Lease => ({
  metadata: { name, resourceVersion: "1" },
  spec: { holderIdentity: holder, leaseTransitions: transitions, leaseDurationSeconds: 5 },
});

describe("candidate choice", () => {
  it("offers only Ready pods with an IP and a free Lease, not terminating, not excluded", () => {
    const pods = [
      readyPod("a"),
      readyPod("b"),
      readyPod("c"),
      { ...readyPod("d"), metadata: { name: "d", deletionTimestamp: new Date() } },
      readyPod("e", { conditions: [{ type: "Ready", status: "False" }] }),
      readyPod("f"),
      readyPod("g"),
      // Ready by its conditions but without an address: nothing could be sent to it.
      readyPod("h", { podIP: undefined }),
    ];
    const leases = new Map([
      ["a", lease("a")],
      ["b", lease("b", "agent-1/r1")],
      ["c", lease("c")],
      ["d", lease("d")],
      ["e", lease("e")],
      ["g", lease("g")],
      ["h", lease("h")],
    ]);
    const names = freePodNames(
      pods,
      (n) => leases.get(n),
      (n) => n === "g",
    );
    expect(names).toEqual(["a", "c"]);
  });

  it("rotates the start so replicas spread over the candidates", () => {
    expect(rotate(["a", "b", "c"], 0)).toEqual(["a", "b", "c"]);
    expect(rotate(["a", "b", "c"], 4)).toEqual(["b", "c", "a"]);
    expect(rotate(["a", "b", "c"], -1)).toEqual(["c", "a", "b"]);
    expect(rotate([], 3)).toEqual([]);
    const starts = new Set(Array.from({ length: 30 }, (_, i) => rotate(["a", "b", "c", "d"], i)[0]));
    expect(starts.size).toBe(4);
  });
});

describe("observed-time expiry (client-go semantics)", () => {
  it("expires only after the record stayed unchanged for the duration on our clock", () => {
    let now = 1000;
    const e = new ObservedExpiry(() => now);
    expect(e.isExpired("x", "k1", 5000)).toBe(false);
    now += 4999;
    expect(e.isExpired("x", "k1", 5000)).toBe(false);
    now += 1;
    expect(e.isExpired("x", "k1", 5000)).toBe(true);
    // A renewal (new key) restarts the observation even if its renewTime lies in the past.
    expect(e.isExpired("x", "k2", 5000)).toBe(false);
    expect(e.remainingMs("x", "k2", 5000)).toBe(5000);
  });

  it("never trusts the record's own timestamps: a renewTime far in the past is not expired when first seen", () => {
    let now = 0;
    const e = new ObservedExpiry(() => now);
    const old: V1Lease = {
      spec: { holderIdentity: "a/1", renewTime: "2001-01-01T00:00:00.000000Z" as unknown as Date },
    };
    expect(e.isExpired("p", recordKey(old), 1000)).toBe(false);
    now = 1000;
    expect(e.isExpired("p", recordKey(old), 1000)).toBe(true);
  });

  it("the record key changes with holder, renewTime and transitions", () => {
    const a = lease("p", "a/1", 1);
    expect(recordKey(a)).not.toBe(recordKey(lease("p", "a/2", 1)));
    expect(recordKey(a)).not.toBe(recordKey(lease("p", "a/1", 2)));
    const renewed = { ...a, spec: { ...a.spec, renewTime: microNow(new Date(5)) } };
    expect(recordKey(renewed)).not.toBe(recordKey(a));
  });
});

describe("lease records", () => {
  it("parses holder identities and free-ness", () => {
    expect(parseHolder("agent-1/req-9")).toEqual({ agentId: "agent-1", requestId: "req-9" });
    expect(parseHolder("agent-1/req/with/slash")).toEqual({
      agentId: "agent-1",
      requestId: "req/with/slash",
    });
    expect(parseHolder("")).toBeNull();
    expect(isLeaseFree(lease("a"))).toBe(true);
    expect(isLeaseFree(lease("a", "x/y"))).toBe(false);
  });
});

describe("MicroTime", () => {
  it("always writes six fractional digits", () => {
    const d = new Date("2026-01-02T03:04:05.123Z");
    expect(formatMicroTime(d)).toBe("2026-01-02T03:04:05.123000Z");
    expect(JSON.stringify({ t: microNow(d) })).toBe('{"t":"2026-01-02T03:04:05.123000Z"}');
    expect(JSON.stringify({ t: toMicroTime("2026-01-02T03:04:05.123456Z") })).toBe(
      '{"t":"2026-01-02T03:04:05.123000Z"}',
    );
    expect(microTimeString("2026-01-02T03:04:05.123456Z")).toBe("2026-01-02T03:04:05.123456Z");
    expect(toMicroTime(undefined)).toBeUndefined();
  });
});

describe("helpers", () => {
  it("reads code and reason from ApiException bodies given as JSON strings", () => {
    const e = new ApiException(
      409,
      "conflict",
      JSON.stringify({ reason: "Conflict", message: "the object has been modified" }),
      {},
    );
    expect(k8sFailure(e)).toEqual({ code: 409, reason: "Conflict", message: "the object has been modified" });
    expect(k8sFailure(new Error("ECONNRESET"))).toEqual({
      code: 0,
      reason: undefined,
      message: "ECONNRESET",
    });
  });

  it("compares resourceVersions numerically only when both are numeric", () => {
    expect(isOlderVersion("9", "10")).toBe(true);
    expect(isOlderVersion("10", "9")).toBe(false);
    expect(isOlderVersion("abc", "10")).toBe(false);
    expect(isOlderVersion(undefined, "10")).toBe(false);
  });

  it("jittered backoff grows, is capped, and is jittered", () => {
    expect(jitteredBackoff(0, 200, 10_000, () => 0)).toBe(100);
    expect(jitteredBackoff(0, 200, 10_000, () => 1)).toBe(200);
    expect(jitteredBackoff(3, 200, 10_000, () => 1)).toBe(1600);
    expect(jitteredBackoff(30, 200, 10_000, () => 1)).toBe(10_000);
    expect(jitteredBackoff(30, 200, 10_000, () => 0)).toBe(5_000);
  });

  it("nearest-rank percentiles", () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(
      percentile(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
    ).toBe(99);
  });
});

describe("pod states for the snapshot", () => {
  it("maps pod + lease to starting / ready / leased / recycling / failed", async () => {
    const { podState } = await import("../../cluster-agent/agent-pool.ts");
    expect(podState(readyPod("a"), lease("a"))).toBe("ready");
    expect(podState(readyPod("a"), lease("a", "x/y"))).toBe("leased");
    expect(podState(readyPod("a"), undefined)).toBe("starting");
    expect(podState(readyPod("a", { conditions: [] }), lease("a"))).toBe("starting");
    expect(
      podState({ ...readyPod("a"), metadata: { name: "a", deletionTimestamp: new Date() } }, lease("a")),
    ).toBe("recycling");
    expect(podState(readyPod("a", { phase: "Failed" }), lease("a"))).toBe("failed");
  });
});
