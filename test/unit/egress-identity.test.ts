/**
 * Who the egress proxy thinks is calling (sandboxes/egress-identity.ts), on the pool-state seam: the
 * in-memory PoolStore holds the pods and Leases the watch would. The same lookup inside the running
 * agent against devcluster pods: test/integration/egress-agent.test.ts.
 */
import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { SANDBOX_ANNOTATIONS, sandboxHolder } from "../../cluster-agent/pool-state/sandbox-record.ts";
import { sandboxEgressLookup } from "../../cluster-agent/sandboxes/egress-identity.ts";
import { decide } from "../../shared/egress-policy.ts";
import { MemoryPoolStore } from "../support/memory-pool-store.ts";

function podAt(store: MemoryPoolStore, name: string, ip: string, phase = "Running") {
  store.addPod(name);
  const pod = store.pods.get(name) as V1Pod;
  store.pods.observe({
    ...pod,
    metadata: { ...pod.metadata, resourceVersion: "2" },
    status: { phase, podIP: ip },
  });
}

function sandboxOn(store: MemoryPoolStore, pod: string, tenant: string, id: string, network?: string) {
  const lease = store.leases.get(pod) as V1Lease;
  store.leases.observe({
    ...lease,
    metadata: {
      ...lease.metadata,
      resourceVersion: String(Number(lease.metadata?.resourceVersion ?? "0") + 100),
      annotations: {
        "pi-sandbox-runtime/tenant": tenant,
        [SANDBOX_ANNOTATIONS.id]: id,
        ...(network !== undefined ? { [SANDBOX_ANNOTATIONS.network]: network } : {}),
      },
    },
    spec: { ...lease.spec, holderIdentity: sandboxHolder(tenant, id), leaseDurationSeconds: 30 },
  });
}

describe("the egress proxy's caller, from the pod cache", () => {
  it("a sandbox pod's IP is that sandbox with its stored policy; a free pod and an unknown IP are nobody", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    podAt(store, "p2", "10.1.0.2");
    podAt(store, "p3", "10.1.0.3");
    sandboxOn(store, "p1", "t1", "sb-1", '{"allow":["pkgs.test"],"deny":[]}');
    sandboxOn(store, "p2", "t2", "sb-2");
    const lookup = sandboxEgressLookup(store, "local");
    const one = await lookup("10.1.0.1");
    expect(one).toMatchObject({ tenant: "t1", sandbox: "sb-1" });
    expect(one && decide(one.policy, "pkgs.test", 443).allowed).toBe(true);
    const two = await lookup("10.1.0.2");
    expect(two).toMatchObject({ tenant: "t2", sandbox: "sb-2" });
    expect(two && decide(two.policy, "pkgs.test", 443).allowed).toBe(false);
    expect(await lookup("10.1.0.3")).toBeUndefined();
    expect(await lookup("10.1.0.9")).toBeUndefined();
  });

  it("an IP two live pods claim is nobody; a finished pod's IP is not its sandbox's", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    sandboxOn(store, "p1", "t1", "sb-1", '{"allow":["pkgs.test"]}');
    const lookup = sandboxEgressLookup(store, "local");
    expect(await lookup("10.1.0.1")).toBeDefined();
    podAt(store, "p2", "10.1.0.1");
    expect(await lookup("10.1.0.1")).toBeUndefined();
    store.pods.forget("p2");
    podAt(store, "p3", "10.1.0.3", "Failed");
    sandboxOn(store, "p3", "t3", "sb-3", '{"allow":["pkgs.test"]}');
    expect(await lookup("10.1.0.3")).toBeUndefined();
  });

  it("a stored policy it cannot read is enforced as no network", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    sandboxOn(store, "p1", "t1", "sb-1", '{"allow":["*"]}');
    const found = await sandboxEgressLookup(store, "local")("10.1.0.1");
    expect(found?.policy.allow).toEqual([]);
  });
});
