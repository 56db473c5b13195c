/**
 * The pool controller's orphan rule on the in-memory store (the same rule against devcluster is in
 * test/integration/pool-controller.test.ts): a Lease without a pod is deleted after the grace,
 * and a delete that failed is retried by a later reconcile, never forgotten; a free pod kept for a
 * tenant (same-tenant reuse) is replaced.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { KubeClients } from "../../cluster-agent/k8s/client.ts";
import { PoolController } from "../../cluster-agent/pool/controller.ts";
import { MemoryPoolStore } from "../support/memory-pool-store.ts";

let controller: PoolController | undefined;
afterEach(async () => {
  await controller?.stop();
  controller = undefined;
});

describe("pool controller: orphan Leases", () => {
  it("retries the delete of an orphan Lease that failed, on a later reconcile", async () => {
    const store = new MemoryPoolStore();
    store.leases.observe({ metadata: { name: "sandbox-orphan", resourceVersion: "1" }, spec: {} });
    store.failNextDelete.set("sandbox-orphan", 500);
    const warnings: string[] = [];
    controller = new PoolController({
      // No pod is created (pool size and cap 0): the API clients are never called.
      clients: {} as KubeClients,
      caches: store,
      bus: new EventBus("agent-a"),
      log: { warn: (_o, msg) => void warnings.push(msg) },
      namespace: "ns",
      poolSize: 0,
      maxPods: 0,
      leaseTtlSeconds: 45,
      podReadyTimeoutSeconds: 60,
      podName: () => "unused",
      podTemplate: () => ({}),
      orphanGraceMs: 0,
      resyncMs: 5,
    });
    controller.start();
    await vi.waitFor(() => expect(store.leases.get("sandbox-orphan")).toBeUndefined(), { timeout: 5_000 });
    const deletes = store.writes.filter((w) => w.what === "delete lease" && w.name === "sandbox-orphan");
    expect(deletes.length).toBe(2);
    expect(warnings).toEqual(["delete of an orphan lease failed; the next reconcile retries"]);
  });
});

describe("pool controller: a free pod kept for a tenant", () => {
  it("is replaced, never left free (same-tenant reuse never frees one; if anything did, no other tenant may get it)", async () => {
    const store = new MemoryPoolStore();
    store.addPod("sandbox-kept");
    store.addPod("sandbox-plain");
    const kept = store.leases.get("sandbox-kept");
    store.leases.observe({
      ...kept,
      metadata: { ...kept?.metadata, annotations: { "pi-sandbox-runtime/kept-for-tenant": "A" } },
    });
    controller = new PoolController({
      // Creates of the replacement fail: only the recycle decision is under test.
      clients: {
        core: { createNamespacedPod: () => Promise.reject(new Error("no API server in this test")) },
      } as unknown as KubeClients,
      caches: store,
      bus: new EventBus("agent-a"),
      log: { warn: () => undefined },
      namespace: "ns",
      poolSize: 2,
      maxPods: 2,
      leaseTtlSeconds: 45,
      podReadyTimeoutSeconds: 60,
      podName: () => "sandbox-new",
      podTemplate: () => ({}),
      orphanGraceMs: 0,
      resyncMs: 5,
    });
    controller.start();
    await vi.waitFor(() => expect(store.pods.get("sandbox-kept")).toBeUndefined(), { timeout: 5_000 });
    expect(controller.recycled).toContainEqual({
      name: "sandbox-kept",
      reason: "free pod kept for a tenant",
    });
    expect(store.pods.get("sandbox-plain")).toBeDefined();
  });
});

describe("pool controller: POOL_MAX_PODS and creates without an answer", () => {
  it("a create that got no answer twice keeps its place under the cap (it may still land) until twice the call budget has passed", async () => {
    const store = new MemoryPoolStore();
    const names: string[] = [];
    let t = 0;
    let reconciles = 0;
    controller = new PoolController({
      clients: {
        core: {
          createNamespacedPod: (p: { body: { metadata?: { name?: string } } }) => {
            names.push(p.body.metadata?.name ?? "");
            return Promise.reject(
              new DOMException("The operation was aborted due to timeout", "TimeoutError"),
            );
          },
        },
      } as unknown as KubeClients,
      caches: store,
      bus: new EventBus("agent-a"),
      log: { warn: () => undefined },
      namespace: "ns",
      poolSize: 1,
      maxPods: 1,
      leaseTtlSeconds: 45,
      podReadyTimeoutSeconds: 60,
      podName: () => `sandbox-${names.length}`,
      podTemplate: (name) => ({ metadata: { name } }),
      orphanGraceMs: 60_000,
      requestTimeoutMs: 1_000,
      resyncMs: 5,
      // The clock moves only when the test says so; each reading is (at least) one more reconcile.
      now: () => {
        reconciles++;
        return t;
      },
    });
    controller.start();
    // The first attempt and its retry under the same name, both without an answer.
    await vi.waitFor(() => expect(names).toHaveLength(2), { timeout: 5_000 });
    expect(names[1]).toBe(names[0]);
    const after = reconciles;
    await vi.waitFor(() => expect(reconciles).toBeGreaterThan(after + 100), { timeout: 5_000 });
    // Many reconciles later: still no other create — a second pod could exceed the cap of 1.
    expect(names).toHaveLength(2);
    expect(controller.podCounts.total).toBe(1);
    // Twice the call budget later the server would have answered or dropped it: the place is free.
    t += 2_000;
    await vi.waitFor(() => expect(names.length).toBeGreaterThan(2), { timeout: 5_000 });
  });
});
