/**
 * Who the egress proxy thinks is calling (sandboxes/egress-identity.ts), on the pool-state seam: the
 * in-memory PoolStore holds the pods and Leases the watch would. The same lookup inside the running
 * agent against devcluster pods: test/integration/egress-agent.test.ts.
 */
import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { SecretValue } from "../../cluster-agent/egress/secrets.ts";
import { claimedLease, freedLease } from "../../cluster-agent/pool-state/lease-record.ts";
import {
  networkAnnotation,
  SANDBOX_ANNOTATIONS,
  sandboxHolder,
} from "../../cluster-agent/pool-state/sandbox-record.ts";
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

  it("a pod held for one call is that call with its policy while held; released or claimed again, nobody", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    const free = store.leases.get("p1") as V1Lease;
    const policy = networkAnnotation({ allow: ["pkgs.test"] });
    const held = claimedLease(free, {
      holder: "agent-a/req-1",
      tenant: "t1",
      requestId: "req-1",
      network: policy,
    });
    store.leases.observe({ ...held, metadata: { ...held.metadata, resourceVersion: "10" } });
    const lookup = sandboxEgressLookup(store, "local");
    const one = await lookup("10.1.0.1");
    expect(one).toMatchObject({ tenant: "t1", sandbox: "request:req-1" });
    expect(one && decide(one.policy, "pkgs.test", 443).allowed).toBe(true);
    // The next holder without a policy does not inherit it; a freed pod is nobody.
    const next = claimedLease(held, { holder: "agent-a/req-2", tenant: "t2", requestId: "req-2" });
    expect(next.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network]).toBeUndefined();
    store.leases.observe({ ...next, metadata: { ...next.metadata, resourceVersion: "11" } });
    expect(await lookup("10.1.0.1")).toBeUndefined();
    const freed = freedLease(held);
    expect(freed.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network]).toBeUndefined();
    store.leases.observe({ ...freed, metadata: { ...freed.metadata, resourceVersion: "12" } });
    expect(await lookup("10.1.0.1")).toBeUndefined();
  });

  it("`*` is enforced only where the deployment permits it (EGRESS_ALLOW_ANY_HOST)", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    sandboxOn(store, "p1", "t1", "sb-1", '{"allow":["*"],"deny":[]}');
    const on = await sandboxEgressLookup(store, "local", undefined, { allowAnyHost: true })("10.1.0.1");
    expect(on && decide(on.policy, "anything.example", 443).allowed).toBe(true);
    const off = await sandboxEgressLookup(store, "local")("10.1.0.1");
    expect(off && decide(off.policy, "anything.example", 443).allowed).toBe(false);
  });

  it("a sandbox's secrets: bound as its tenant stored them now, with its own placeholder; a deleted one binds nothing", async () => {
    const store = new MemoryPoolStore();
    podAt(store, "p1", "10.1.0.1");
    sandboxOn(store, "p1", "t1", "sb-1", '{"allow":["api.test"],"deny":[]}');
    const lease = store.leases.get("p1") as V1Lease;
    store.leases.observe({
      ...lease,
      metadata: {
        ...lease.metadata,
        resourceVersion: "500",
        annotations: {
          ...lease.metadata?.annotations,
          [SANDBOX_ANNOTATIONS.secrets]: JSON.stringify({ API_KEY: "pi-secret-abc", GONE: "pi-secret-def" }),
        },
      },
    });
    const asked: string[] = [];
    const stored = new Map([
      ["API_KEY", { name: "API_KEY", value: new SecretValue("v"), hosts: ["api.test"], updatedAt: "" }],
    ]);
    const found = await sandboxEgressLookup(store, "local", async (tenant) => {
      asked.push(tenant);
      return stored;
    })("10.1.0.1");
    expect(asked).toEqual(["t1"]);
    expect(found?.policy.secrets.map((b) => [b.name, b.header, b.format])).toEqual([
      ["API_KEY", "authorization", "Bearer {value}"],
    ]);
    expect(found?.secrets?.get("API_KEY")?.placeholder).toBe("pi-secret-abc");
    expect(found?.secrets?.has("GONE")).toBe(false);
    expect(JSON.stringify(found)).not.toContain('"v"');
  });
});
