import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import type { EventBus } from "../events/bus.ts";
import type { KubeClients } from "../k8s/client.ts";
import { WatchedCache } from "../k8s/watched-cache.ts";
import { withTimeout } from "../k8s/with-timeout.ts";
import { POOL_LABEL_SELECTOR } from "./labels.ts";
import { isPodReady } from "./pod-state.ts";
import type { DeletionCause, PoolStore } from "./pool-store.ts";

/**
 * The watch-fed view of the pool shared by the lease manager and the pool controller: sandbox pods
 * and their Leases (both selected by the pool labels, so the leader Lease is not in here).
 * Emits pod.ready when a pod turns Ready and pod.deleted when it is really gone.
 */
export class PoolCaches implements PoolStore {
  readonly pods: WatchedCache<V1Pod>;
  readonly leases: WatchedCache<V1Lease>;
  /** Which request caused a pod's deletion (release with replace, expiry), for its pod.deleted event. */
  private readonly causes = new Map<string, DeletionCause>();

  constructor(
    private readonly clients: KubeClients,
    readonly namespace: string,
    bus: EventBus,
    onError?: (what: string, e: unknown, retryInMs: number) => void,
  ) {
    this.pods = new WatchedCache<V1Pod>({
      kubeConfig: clients.kubeConfig,
      path: `/api/v1/namespaces/${namespace}/pods`,
      list: () => clients.core.listNamespacedPod({ namespace, labelSelector: POOL_LABEL_SELECTOR }),
      labelSelector: POOL_LABEL_SELECTOR,
      onError: (e, ms) => onError?.("pods", e, ms),
    });
    this.leases = new WatchedCache<V1Lease>({
      kubeConfig: clients.kubeConfig,
      path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      list: () => clients.coordination.listNamespacedLease({ namespace, labelSelector: POOL_LABEL_SELECTOR }),
      labelSelector: POOL_LABEL_SELECTOR,
      onError: (e, ms) => onError?.("leases", e, ms),
    });
    this.pods.onChange((c) => {
      const name = c.obj.metadata?.name;
      if (c.type === "delete") {
        const cause = name ? this.causes.get(name) : undefined;
        if (name) this.causes.delete(name);
        bus.emit({
          type: "pod.deleted",
          pod: name,
          requestId: cause?.requestId,
          tenant: cause?.tenant,
          data: { phase: c.obj.status?.phase ?? null, reason: cause?.reason ?? "external" },
        });
        return;
      }
      const wasReady = c.type === "update" && isPodReady(c.old);
      if (!wasReady && isPodReady(c.obj))
        bus.emit({ type: "pod.ready", pod: name, data: { podIP: c.obj.status?.podIP } });
    });
  }

  /** Remember why `pod` is being deleted, so its pod.deleted event names the request behind it. */
  attributeDeletion(pod: string, cause: DeletionCause): void {
    this.causes.set(pod, cause);
    if (this.causes.size > 10_000) {
      const oldest = this.causes.keys().next().value;
      if (oldest !== undefined) this.causes.delete(oldest);
    }
  }

  /**
   * Every write of a pool Lease goes through here: a compare-and-swap PUT (the body carries the
   * resourceVersion it was read at) bounded by `timeoutMs`, whose result is fed into the cache at
   * once so the next decision sees our own write, not the older watched copy. Throws like client-node.
   */
  async replaceLease(body: V1Lease, timeoutMs: number, what: string): Promise<V1Lease> {
    const name = body.metadata?.name ?? "";
    const updated = await withTimeout(
      this.clients.coordination.replaceNamespacedLease({ name, namespace: this.namespace, body }),
      timeoutMs,
      `${what} ${name}`,
    );
    this.leases.observe(updated);
    return updated;
  }

  /** Read one pool Lease from the server (not the cache) and feed it into the cache. */
  async readLease(name: string, timeoutMs: number): Promise<V1Lease> {
    const l = await withTimeout(
      this.clients.coordination.readNamespacedLease({ name, namespace: this.namespace }),
      timeoutMs,
      `read lease ${name}`,
    );
    this.leases.observe(l);
    return l;
  }

  /** Delete a pool Lease, conditional on `resourceVersion` when given; the cache forgets it once gone. */
  async deleteLease(name: string, timeoutMs: number, resourceVersion?: string): Promise<void> {
    await withTimeout(
      this.clients.coordination.deleteNamespacedLease({
        name,
        namespace: this.namespace,
        ...(resourceVersion !== undefined ? { body: { preconditions: { resourceVersion } } } : {}),
      }),
      timeoutMs,
      `delete lease ${name}`,
    );
    this.leases.forget(name);
  }

  async deletePod(name: string, timeoutMs: number): Promise<void> {
    await withTimeout(
      this.clients.core.deleteNamespacedPod({ name, namespace: this.namespace }),
      timeoutMs,
      `delete pod ${name}`,
    );
  }

  async start(timeoutMs = 10_000): Promise<boolean> {
    const [a, b] = await Promise.all([this.pods.start(timeoutMs), this.leases.start(timeoutMs)]);
    return a && b;
  }

  async stop(): Promise<void> {
    await Promise.all([this.pods.stop(), this.leases.stop()]);
  }
}
