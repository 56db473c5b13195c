import { describe, expect, it } from "vitest";
import { deletePodAndLease } from "../../cluster-agent/pool-state/delete-pod-and-lease.ts";
import { MemoryPoolStore } from "../support/memory-pool-store.ts";

const warnings: string[] = [];
const log = { warn: (_obj: object, msg: string) => void warnings.push(msg) };
const opts = { timeoutMs: 1000, log };

// The one recycling-by-replacement path of the lease manager and the pool controller.
describe("deletePodAndLease", () => {
  it("deletes the Lease first (so the pod is never a candidate while it goes), then the pod", async () => {
    const store = new MemoryPoolStore();
    store.addPod("p0");
    expect(await deletePodAndLease(store, "p0", opts)).toBe(true);
    expect(store.writes.map((w) => w.what)).toEqual(["delete lease", "delete pod"]);
    expect(store.leases.get("p0")).toBeUndefined();
    expect(store.pods.get("p0")).toBeUndefined();
  });

  it("a conditional delete that loses to a newer Lease (a renewal landed) leaves both, logged", async () => {
    const store = new MemoryPoolStore();
    store.addPod("p0");
    const judged = store.leases.get("p0")?.metadata?.resourceVersion;
    store.rivalWrite("p0", { holderIdentity: "agent-b/r1" });
    warnings.length = 0;
    expect(await deletePodAndLease(store, "p0", { ...opts, leaseResourceVersion: judged })).toBe(false);
    expect(store.leases.get("p0")).toBeDefined();
    expect(store.pods.get("p0")).toBeDefined();
    expect(warnings).toEqual(["delete lease failed; pod kept"]);
  });

  it("what is already gone (404) counts as deleted", async () => {
    const store = new MemoryPoolStore();
    store.addPod("p0");
    store.leases.forget("p0");
    expect(await deletePodAndLease(store, "p0", opts)).toBe(true);
    expect(await deletePodAndLease(store, "p0", opts)).toBe(true);
  });
});
