import { ApiException, type KubernetesObject, type V1Lease, type V1Pod } from "@kubernetes/client-node";
import type { CacheChange } from "../../cluster-agent/k8s/watched-cache.ts";
import type { Clock } from "../../cluster-agent/pool-state/clock.ts";
import { TENANT_ANNOTATION } from "../../cluster-agent/pool-state/labels.ts";
import type { CacheView, DeletionCause, PoolStore } from "../../cluster-agent/pool-state/pool-store.ts";
import { SANDBOX_ANNOTATIONS, sandboxHolder } from "../../cluster-agent/pool-state/sandbox-record.ts";

/**
 * An in-memory PoolStore with the API server's Lease semantics that the lease core relies on
 * (compare-and-swap on resourceVersion → 409, missing → 404) and a cache that reflects every
 * write at once. For fast unit specifications of the lease manager's dispatch rules; the real
 * store (PoolCaches over devcluster) is what the integration suites use.
 */
class MemoryCache<T extends KubernetesObject> implements CacheView<T> {
  readonly items = new Map<string, T>();
  private readonly listeners = new Set<(c: CacheChange<T>) => void>();
  get(name: string): T | undefined {
    return this.items.get(name);
  }
  list(): T[] {
    return [...this.items.values()];
  }
  onChange(listener: (c: CacheChange<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  observe(obj: T): void {
    const name = obj.metadata?.name ?? "";
    const old = this.items.get(name);
    this.items.set(name, obj);
    this.emit(old ? { type: "update", obj, old } : { type: "add", obj });
  }
  forget(name: string): void {
    const old = this.items.get(name);
    if (!old) return;
    this.items.delete(name);
    this.emit({ type: "delete", obj: old });
  }
  private emit(c: CacheChange<T>): void {
    for (const l of this.listeners) l(c);
  }
}

const status = (code: number, reason: string, message = reason) =>
  new ApiException(code, reason, JSON.stringify({ kind: "Status", code, reason, message }), {});

export class MemoryPoolStore implements PoolStore {
  readonly pods = new MemoryCache<V1Pod>();
  readonly leases = new MemoryCache<V1Lease>();
  readonly writes: Array<{ what: string; name: string }> = [];
  /** Make the next replaceLease of `name` fail with this status (a rival replica's write, an outage). */
  readonly failNext = new Map<string, number>();
  /** The Status message of those failures (default: the reason), e.g. an admission webhook's words. */
  failMessage: string | undefined;
  /** Make the next deleteLease of `name` fail with this status (an outage). */
  readonly failNextDelete = new Map<string, number>();
  /** Make the next readLease of `name` fail with this status (an outage). */
  readonly failNextRead = new Map<string, number>();
  private version = 1;

  /** A Ready pool pod with its free Lease. */
  addPod(name: string): void {
    this.pods.observe({
      metadata: { name },
      status: { phase: "Running", podIP: "127.0.1.2", conditions: [{ type: "Ready", status: "True" }] },
    });
    this.leases.observe({
      metadata: { name, resourceVersion: String(this.version++) },
      spec: { leaseDurationSeconds: 45, leaseTransitions: 0 },
    });
  }

  /** A Ready pod whose Lease a sandbox holds, as SandboxService.create leaves it. */
  addSandbox(name: string, tenant: string, id: string, idleTimeoutSeconds: number): void {
    this.addPod(name);
    const lease = this.leases.get(name) as V1Lease;
    this.leases.observe({
      ...lease,
      metadata: {
        ...lease.metadata,
        annotations: {
          [TENANT_ANNOTATION]: tenant,
          [SANDBOX_ANNOTATIONS.id]: id,
          [SANDBOX_ANNOTATIONS.createdAt]: new Date().toISOString(),
        },
      },
      spec: {
        ...lease.spec,
        holderIdentity: sandboxHolder(tenant, id),
        leaseDurationSeconds: idleTimeoutSeconds,
      },
    });
  }

  /** Another writer changed the Lease (e.g. a rival replica took it). */
  rivalWrite(name: string, spec: V1Lease["spec"]): void {
    const l = this.leases.get(name);
    if (!l) return;
    this.leases.observe({
      ...l,
      metadata: { ...l.metadata, resourceVersion: String(this.version++) },
      spec: { ...l.spec, ...spec },
    });
  }

  async replaceLease(body: V1Lease, _timeoutMs: number, what: string): Promise<V1Lease> {
    const name = body.metadata?.name ?? "";
    this.writes.push({ what, name });
    await Promise.resolve();
    const code = this.failNext.get(name);
    if (code !== undefined) {
      this.failNext.delete(name);
      throw status(code, code === 409 ? "Conflict" : "InternalError", this.failMessage);
    }
    const current = this.leases.get(name);
    if (!current) throw status(404, "NotFound");
    if (current.metadata?.resourceVersion !== body.metadata?.resourceVersion) throw status(409, "Conflict");
    const stored: V1Lease = {
      ...body,
      metadata: { ...body.metadata, resourceVersion: String(this.version++) },
    };
    this.leases.observe(stored);
    return stored;
  }

  async readLease(name: string): Promise<V1Lease> {
    const code = this.failNextRead.get(name);
    if (code !== undefined) {
      this.failNextRead.delete(name);
      throw status(code, "InternalError");
    }
    const l = this.leases.get(name);
    if (!l) throw status(404, "NotFound");
    return l;
  }

  async deleteLease(name: string, _timeoutMs: number, resourceVersion?: string): Promise<void> {
    this.writes.push({ what: "delete lease", name });
    await Promise.resolve();
    const code = this.failNextDelete.get(name);
    if (code !== undefined) {
      this.failNextDelete.delete(name);
      throw status(code, "InternalError");
    }
    const l = this.leases.get(name);
    if (!l) throw status(404, "NotFound");
    if (resourceVersion !== undefined && l.metadata?.resourceVersion !== resourceVersion)
      throw status(409, "Conflict");
    this.leases.forget(name);
  }

  async deletePod(name: string): Promise<void> {
    this.writes.push({ what: "delete pod", name });
    if (!this.pods.get(name)) throw status(404, "NotFound");
    this.pods.forget(name);
  }

  attributeDeletion(_pod: string, _cause: DeletionCause): void {}
}

/** A manual clock: time moves only when the test advances it; due timers fire in order. */
export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.timers.delete(handle);
  }
  /** Move time forward by `ms`, firing every timer that falls due (and flushing microtasks between). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
    await flush();
  }
}

/** Let pending promise callbacks and microtasks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}
