import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow, toMicroTime } from "../k8s/microtime.ts";
import type { PoolCaches } from "../pool/caches.ts";
import { REQUEST_ID_ANNOTATION, TENANT_ANNOTATION } from "../pool/labels.ts";
import { freePodNames, rotate } from "./candidates.ts";
import { holderOf, parseHolder, tenantOf, transitionsOf } from "./lease-record.ts";
import { LeaseStats } from "./stats.ts";
import type { AcquireRequest, LeaseHandle, Scrubber } from "./types.ts";
import { WaitQueue } from "./wait-queue.ts";

export interface LeaseManagerOptions {
  clients: KubeClients;
  caches: PoolCaches;
  bus: EventBus;
  namespace: string;
  agentId: string;
  leaseTtlSeconds: number;
  queueTimeoutSeconds: number;
  tenantMaxLeases: number;
  recycle: "replace" | "scrub";
  /** Required when recycle is "scrub". */
  scrubber?: Scrubber | undefined;
  /** Per API call. */
  requestTimeoutMs?: number;
  /** Compare-and-swaps in flight at once from this replica (default 16). */
  maxParallelAcquires?: number;
  /** How long to leave a pod freed by another replica to that replica's own waiters (default 50 ms). */
  handoffGraceMs?: number;
  random?: () => number;
}

interface Waiter {
  tenant: string;
  requestId: string;
  enqueuedAt: number;
  signal: AbortSignal | undefined;
  settled: boolean;
  queuedEmitted: boolean;
  resolve: (r: Result<LeaseHandle>) => void;
  cleanup: () => void;
}

interface Held {
  pod: string;
  podIP: string;
  tenant: string;
  requestId: string;
  fence: number;
  lease: V1Lease;
  acquiredAt: number;
  lastRenewOk: number;
  lost: AbortController;
  renewTimer: NodeJS.Timeout | undefined;
  renewing: Promise<void> | undefined;
  releasing: Promise<void> | undefined;
  usedUntil: string | undefined;
}

/**
 * Hands out sandbox pods with Lease compare-and-swap. Candidates come from the watch-fed caches
 * only; waiting callers sit in a per-replica FIFO woken by cache changes. Renewal keeps held
 * leases alive; release recycles the pod (replace or scrub) and always completes.
 */
export class LeaseManager {
  readonly stats = new LeaseStats();
  private readonly queue = new WaitQueue<Waiter>();
  private readonly held = new Map<string, Held>();
  /** Pods with a CAS in flight from this replica. */
  private readonly reserved = new Set<string>();
  /** Leases we lost a CAS on, with the resourceVersion we lost with: skipped until the cache moves on. */
  private readonly conflicted = new Map<string, string | undefined>();
  private readonly inFlightByTenant = new Map<string, number>();
  /**
   * Pods another replica just freed: that replica serves its own queue first (it knows before
   * anyone else); the others hold back for a moment instead of racing it into a 409.
   */
  private readonly freedElsewhere = new Map<string, number>();
  private readonly handoffGraceMs: number;
  private graceTimer: NodeJS.Timeout | undefined;
  private dispatchScheduled = false;
  /** Waiters with a CAS in flight. */
  private readonly serving = new Set<Waiter>();
  private readonly maxParallel: number;
  private closed = false;
  private rotation: number;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly timeoutMs: number;
  private readonly random: () => number;

  constructor(private readonly o: LeaseManagerOptions) {
    if (o.recycle === "scrub" && !o.scrubber) throw new Error("RECYCLE=scrub needs a Scrubber");
    this.random = o.random ?? Math.random;
    this.rotation = Math.floor(this.random() * 1_000_000);
    this.timeoutMs = o.requestTimeoutMs ?? 5_000;
    this.handoffGraceMs = o.handoffGraceMs ?? 50;
    this.maxParallel = o.maxParallelAcquires ?? 16;
    // Any change can free a pod (release, lease freed or deleted, pod turning Ready): wake the queue.
    this.unsubscribe.push(
      o.caches.leases.onChange((c) => {
        if (c.type === "delete") {
          this.freedElsewhere.delete(c.obj.metadata?.name ?? "");
          this.conflicted.delete(c.obj.metadata?.name ?? "");
        } else if (c.type === "update" && holderOf(c.old) && !holderOf(c.obj)) {
          const prev = parseHolder(holderOf(c.old));
          if (prev && prev.agentId !== o.agentId)
            this.freedElsewhere.set(c.obj.metadata?.name ?? "", performance.now());
        }
        this.wake();
      }),
    );
    this.unsubscribe.push(o.caches.pods.onChange(() => this.wake()));
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get heldCount(): number {
    return this.held.size;
  }

  queueWaiters(): Array<{ requestId: string; tenant: string; waitedMs: number }> {
    const now = performance.now();
    return this.queue
      .entries()
      .map((w) => ({ requestId: w.requestId, tenant: w.tenant, waitedMs: now - w.enqueuedAt }));
  }

  acquire(req: AcquireRequest): Promise<Result<LeaseHandle>> {
    if (this.closed) return Promise.resolve(err(new AppError("shutting_down", "the agent is shutting down")));
    if (req.signal?.aborted)
      return Promise.resolve(err(new AppError("request_cancelled", "request cancelled")));
    return new Promise<Result<LeaseHandle>>((resolve) => {
      const w: Waiter = {
        tenant: req.tenant,
        requestId: req.requestId,
        enqueuedAt: performance.now(),
        signal: req.signal,
        settled: false,
        queuedEmitted: false,
        resolve,
        cleanup: () => undefined,
      };
      const timer = setTimeout(() => this.timeOut(w), this.o.queueTimeoutSeconds * 1000);
      const onAbort = () =>
        this.settle(w, err(new AppError("request_cancelled", "request cancelled while waiting")), "aborted");
      req.signal?.addEventListener("abort", onAbort, { once: true });
      w.cleanup = () => {
        clearTimeout(timer);
        req.signal?.removeEventListener("abort", onAbort);
      };
      this.queue.push(w);
      this.wake();
    });
  }

  /** Stop serving: waiters get shutting_down, held leases are released. */
  async shutdown(): Promise<void> {
    this.closed = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    for (const u of this.unsubscribe) u();
    for (const w of this.queue.entries())
      this.settle(w, err(new AppError("shutting_down", "the agent is shutting down")), "shutdown");
    await Promise.all([...this.held.values()].map((h) => this.release(h)));
  }

  /** Names of pods this replica holds right now (for the snapshot and tests). */
  heldPods(): string[] {
    return [...this.held.keys()];
  }

  // ---------- queue ----------

  private timeOut(w: Waiter): void {
    if (w.settled) return;
    this.stats.queueTimeouts++;
    const waited = performance.now() - w.enqueuedAt;
    this.o.bus.emit({
      type: "queue.timeout",
      requestId: w.requestId,
      tenant: w.tenant,
      data: { waitedMs: Math.round(waited) },
    });
    const retryAfterSeconds = Math.max(1, Math.ceil(this.o.leaseTtlSeconds / 3));
    this.settle(
      w,
      err(
        new AppError("queue_timeout", `no sandbox became free within ${this.o.queueTimeoutSeconds} s`, {
          retryAfterSeconds,
        }),
      ),
      "timeout",
    );
  }

  /** Resolve a waiter once and take it out of the queue at once. */
  private settle(
    w: Waiter,
    r: Result<LeaseHandle>,
    reason: "served" | "aborted" | "timeout" | "shutdown",
  ): void {
    if (w.settled) return;
    w.settled = true;
    w.cleanup();
    this.queue.remove(w);
    if (w.queuedEmitted) {
      this.o.bus.emit({
        type: "queue.left",
        requestId: w.requestId,
        tenant: w.tenant,
        data: { reason, waitedMs: Math.round(performance.now() - w.enqueuedAt), depth: this.queue.length },
      });
    }
    w.resolve(r);
  }

  private heldByTenant(tenant: string): number {
    let n = this.inFlightByTenant.get(tenant) ?? 0;
    for (const l of this.o.caches.leases.list()) if (holderOf(l) && tenantOf(l) === tenant) n++;
    return n;
  }

  /** Coalesced: cache listeners fire in the middle of our own bookkeeping, so dispatch runs after it. */
  private wake(): void {
    if (this.dispatchScheduled || this.closed) return;
    this.dispatchScheduled = true;
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.dispatch();
    });
  }

  /**
   * Give free pods to waiters in FIFO order, skipping tenants at their cap, each waiter its own
   * candidate, up to maxParallel compare-and-swaps in flight. A waiter whose CAS loses goes back to
   * waiting at its place in the queue and the dispatch runs again.
   */
  private dispatch(): void {
    if (this.closed) return;
    const capped = new Set<string>();
    let candidates: string[] | undefined;
    let next = 0;
    for (const w of this.queue.entries()) {
      if (w.settled || this.serving.has(w)) continue;
      if (this.serving.size >= this.maxParallel) break;
      if (capped.has(w.tenant)) continue;
      if (this.heldByTenant(w.tenant) >= this.o.tenantMaxLeases) {
        capped.add(w.tenant);
        continue;
      }
      candidates ??= this.candidates();
      const name = candidates[next++];
      if (name === undefined) break; // no free pod for this waiter, nor for anyone behind it
      this.startServe(w, name);
    }
    for (const w of this.queue.entries()) {
      if (w.settled || w.queuedEmitted || this.serving.has(w)) continue;
      w.queuedEmitted = true;
      this.o.bus.emit({
        type: "queue.entered",
        requestId: w.requestId,
        tenant: w.tenant,
        data: {
          position: this.queue.position(w),
          depth: this.queue.length,
          tenantAtCap: capped.has(w.tenant),
        },
      });
    }
  }

  private candidates(): string[] {
    const leases = this.o.caches.leases;
    const names = freePodNames(
      this.o.caches.pods.list(),
      (n) => leases.get(n),
      (n) => {
        if (this.reserved.has(n) || this.held.has(n)) return true;
        const freedAt = this.freedElsewhere.get(n);
        if (freedAt !== undefined) {
          const left = freedAt + this.handoffGraceMs - performance.now();
          if (left > 0) {
            this.wakeIn(left);
            return true;
          }
          this.freedElsewhere.delete(n);
        }
        if (!this.conflicted.has(n)) return false;
        if (this.conflicted.get(n) !== leases.get(n)?.metadata?.resourceVersion) {
          this.conflicted.delete(n);
          return false;
        }
        return true;
      },
    );
    return rotate(names, this.rotation++);
  }

  private wakeIn(ms: number): void {
    if (this.graceTimer) return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      this.wake();
    }, Math.ceil(ms) + 1);
  }

  /** One CAS for one waiter on one candidate; the outcome is settled before any other dispatch runs. */
  private startServe(w: Waiter, name: string): void {
    const lease = this.o.caches.leases.get(name);
    const pod = this.o.caches.pods.get(name);
    if (!lease || !pod) return;
    this.serving.add(w);
    this.reserved.add(name);
    this.inFlightByTenant.set(w.tenant, (this.inFlightByTenant.get(w.tenant) ?? 0) + 1);
    void this.casAcquire(lease, w).then((result) => {
      this.serving.delete(w);
      this.reserved.delete(name);
      const n = (this.inFlightByTenant.get(w.tenant) ?? 1) - 1;
      if (n <= 0) this.inFlightByTenant.delete(w.tenant);
      else this.inFlightByTenant.set(w.tenant, n);
      if (result.ok) {
        this.handOut(w, pod, result.value);
      } else {
        const f = result.error;
        // Skip this pod until the cache shows a newer version of its Lease (or its deletion).
        this.conflicted.set(name, lease.metadata?.resourceVersion);
        if (isConflict(f)) {
          this.stats.conflicts++;
          this.o.bus.emit({
            type: "lease.conflict",
            requestId: w.requestId,
            tenant: w.tenant,
            pod: name,
            data: { resourceVersion: lease.metadata?.resourceVersion },
          });
        }
      }
      this.wake();
    });
  }

  private async casAcquire(
    lease: V1Lease,
    w: Waiter,
  ): Promise<Result<V1Lease, { code: number; reason: string | undefined; message: string }>> {
    const now = microNow();
    const _name = lease.metadata?.name ?? "";
    const body: V1Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        ...lease.metadata,
        annotations: {
          ...(lease.metadata?.annotations ?? {}),
          [TENANT_ANNOTATION]: w.tenant,
          [REQUEST_ID_ANNOTATION]: w.requestId,
        },
      },
      spec: {
        ...lease.spec,
        holderIdentity: `${this.o.agentId}/${w.requestId}`,
        acquireTime: now,
        renewTime: now,
        leaseDurationSeconds: this.o.leaseTtlSeconds,
        leaseTransitions: transitionsOf(lease) + 1,
      },
    };
    try {
      return ok(await this.o.caches.replaceLease(body, this.timeoutMs));
    } catch (e) {
      return err(k8sFailure(e));
    }
  }

  private handOut(w: Waiter, pod: V1Pod, lease: V1Lease): void {
    const name = pod.metadata?.name ?? "";
    const now = performance.now();
    const h: Held = {
      pod: name,
      podIP: pod.status?.podIP ?? "",
      tenant: w.tenant,
      requestId: w.requestId,
      fence: transitionsOf(lease),
      lease,
      acquiredAt: now,
      lastRenewOk: now,
      lost: new AbortController(),
      renewTimer: undefined,
      renewing: undefined,
      releasing: undefined,
      usedUntil: undefined,
    };
    this.held.set(name, h);
    if (w.settled) {
      // The caller left (abort / timeout) while our CAS was in flight: give the pod straight back.
      void this.freeUnused(h);
      return;
    }
    const queueMs = now - w.enqueuedAt;
    this.stats.recordAcquire(queueMs);
    this.o.bus.emit({
      type: "lease.acquired",
      requestId: w.requestId,
      tenant: w.tenant,
      pod: name,
      data: {
        fence: h.fence,
        acquireMs: Math.round(queueMs * 1000) / 1000,
        queueMs: Math.round(queueMs * 1000) / 1000,
        queued: w.queuedEmitted,
        resourceVersion: lease.metadata?.resourceVersion,
      },
    });
    this.scheduleRenew(h);
    const handle: LeaseHandle = {
      pod: name,
      podIP: h.podIP,
      namespace: this.o.namespace,
      fence: h.fence,
      requestId: w.requestId,
      tenant: w.tenant,
      queueMs,
      lost: h.lost.signal,
      release: () => this.release(h),
    };
    this.settle(w, ok(handle), "served");
  }

  // ---------- renewal ----------

  private scheduleRenew(h: Held): void {
    const period = Math.max(100, (this.o.leaseTtlSeconds * 1000) / 3);
    h.renewTimer = setTimeout(() => {
      h.renewing = this.renew(h).finally(() => {
        h.renewing = undefined;
        if (!h.releasing && !h.lost.signal.aborted) this.scheduleRenew(h);
      });
    }, period);
  }

  private markLost(h: Held, reason: string, data: Record<string, unknown> = {}): void {
    if (h.lost.signal.aborted) return;
    if (h.renewTimer) clearTimeout(h.renewTimer);
    h.lost.abort(new AppError("lease_lost", `lease on ${h.pod} lost: ${reason}`));
    this.o.bus.emit({
      type: "lease.lost",
      requestId: h.requestId,
      tenant: h.tenant,
      pod: h.pod,
      data: { reason, fence: h.fence, ...data },
    });
  }

  private async renew(h: Held): Promise<void> {
    if (h.releasing || h.lost.signal.aborted) return;
    const mine = `${this.o.agentId}/${h.requestId}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      const body: V1Lease = {
        ...h.lease,
        spec: {
          ...h.lease.spec,
          acquireTime: toMicroTime(h.lease.spec?.acquireTime),
          renewTime: microNow(),
        },
      };
      try {
        const updated = await this.o.caches.replaceLease(body, this.timeoutMs);
        if (h.releasing) return; // release took over meanwhile; it re-reads what it needs
        h.lease = updated;
        h.lastRenewOk = performance.now();
        this.o.bus.emit({
          type: "lease.renewed",
          requestId: h.requestId,
          tenant: h.tenant,
          pod: h.pod,
          data: { fence: h.fence },
        });
        return;
      } catch (e) {
        const f = k8sFailure(e);
        if (isNotFound(f)) return this.markLost(h, "lease deleted");
        if (isConflict(f)) {
          // Someone wrote the Lease: still ours (e.g. our own earlier write raced) → retry; else it was taken.
          const current = await this.readLease(h.pod);
          if (!current) return this.markLost(h, "lease deleted");
          if (holderOf(current) !== mine || transitionsOf(current) !== h.fence) {
            return this.markLost(h, "lease taken over", {
              holder: holderOf(current),
              fence: transitionsOf(current),
            });
          }
          h.lease = current;
          continue;
        }
        // Transient error: keep trying at the next period unless the lease would have expired by then.
        const period = (this.o.leaseTtlSeconds * 1000) / 3;
        if (performance.now() - h.lastRenewOk + period >= this.o.leaseTtlSeconds * 1000) {
          return this.markLost(h, `renewal failing: ${f.message}`);
        }
        return;
      }
    }
  }

  private async readLease(name: string): Promise<V1Lease | undefined> {
    try {
      const l = await this.o.clients.coordination.readNamespacedLease(
        { name, namespace: this.o.namespace },
        deadline(this.timeoutMs),
      );
      this.o.caches.leases.observe(l);
      return l;
    } catch {
      return undefined;
    }
  }

  // ---------- release ----------

  private release(h: Held): Promise<void> {
    if (!h.releasing) {
      // The moment the holder stopped using the pod: every later holder's acquisition comes after it.
      h.usedUntil = new Date().toISOString();
      h.releasing = this.doRelease(h).catch(() => undefined);
    }
    return h.releasing;
  }

  private async doRelease(h: Held): Promise<void> {
    if (h.renewTimer) clearTimeout(h.renewTimer);
    await h.renewing?.catch(() => undefined);
    const heldMs = Math.round(performance.now() - h.acquiredAt);
    const usedUntil = h.usedUntil;
    try {
      if (h.lost.signal.aborted) {
        // Not ours any more: the controller recycles the pod; touching it could hurt the new holder.
        this.o.bus.emit({
          type: "lease.released",
          requestId: h.requestId,
          tenant: h.tenant,
          pod: h.pod,
          data: { heldMs, usedUntil, recycle: "none", lost: true, fence: h.fence },
        });
        return;
      }
      if (this.o.recycle === "scrub" && this.o.scrubber) {
        const scrubbed = await this.o.scrubber
          .scrub({ namespace: this.o.namespace, pod: h.pod, podIP: h.podIP, fence: h.fence })
          .catch((e: unknown) => err(new AppError("sandbox_failed", String(e))));
        if (scrubbed.ok && (await this.clearHolder(h))) {
          this.o.bus.emit({
            type: "lease.released",
            requestId: h.requestId,
            tenant: h.tenant,
            pod: h.pod,
            data: { heldMs, usedUntil, recycle: "scrub", fence: h.fence, ...scrubbed.value },
          });
          return;
        }
        await this.replaceReleased(h, "scrub failed", {
          heldMs,
          usedUntil,
          scrubFailed: scrubbed.ok ? "free failed" : scrubbed.error.message,
        });
        return;
      }
      await this.replaceReleased(h, "recycle replace", { heldMs, usedUntil });
    } finally {
      this.held.delete(h.pod);
      this.wake();
    }
  }

  /** Recycle a released pod by replacement: delete it and its Lease (the controller brings a fresh one). */
  private async replaceReleased(h: Held, reason: string, data: Record<string, unknown>): Promise<void> {
    this.o.caches.attributeDeletion(h.pod, { requestId: h.requestId, tenant: h.tenant, reason });
    await this.deletePodAndLease(h.pod);
    this.o.bus.emit({
      type: "lease.released",
      requestId: h.requestId,
      tenant: h.tenant,
      pod: h.pod,
      data: { ...data, recycle: "replace", fence: h.fence },
    });
  }

  /** The caller left before using the pod: free the Lease without recycling (nothing ran in it). */
  private async freeUnused(h: Held): Promise<void> {
    h.usedUntil = new Date().toISOString();
    h.releasing = (async () => {
      try {
        if (!(await this.clearHolder(h))) await this.deletePodAndLease(h.pod);
        this.o.bus.emit({
          type: "lease.released",
          requestId: h.requestId,
          tenant: h.tenant,
          pod: h.pod,
          data: { heldMs: 0, usedUntil: h.usedUntil, recycle: "none", unused: true, fence: h.fence },
        });
      } finally {
        this.held.delete(h.pod);
        this.wake();
      }
    })().catch(() => undefined);
    await h.releasing;
  }

  /** CAS the holder away (keeping leaseTransitions, the fence, monotonic). False if it was not ours any more. */
  private async clearHolder(h: Held): Promise<boolean> {
    const mine = `${this.o.agentId}/${h.requestId}`;
    let lease: V1Lease | undefined = h.lease;
    for (let attempt = 0; attempt < 3 && lease; attempt++) {
      if (holderOf(lease) !== mine || transitionsOf(lease) !== h.fence) return false;
      const annotations = { ...(lease.metadata?.annotations ?? {}) };
      delete annotations[TENANT_ANNOTATION];
      delete annotations[REQUEST_ID_ANNOTATION];
      const body: V1Lease = {
        ...lease,
        metadata: { ...lease.metadata, annotations },
        spec: {
          ...lease.spec,
          holderIdentity: undefined,
          acquireTime: toMicroTime(lease.spec?.acquireTime),
          renewTime: microNow(),
        },
      };
      try {
        await this.o.caches.replaceLease(body, this.timeoutMs);
        return true;
      } catch (e) {
        const f = k8sFailure(e);
        if (!isConflict(f)) return false;
        lease = await this.readLease(h.pod);
      }
    }
    return false;
  }

  private async deletePodAndLease(name: string): Promise<void> {
    const ns = this.o.namespace;
    // Pod first: the Lease (still held by us) keeps other replicas off it until the pod is Terminating.
    await this.o.clients.core
      .deleteNamespacedPod({ name, namespace: ns }, deadline(this.timeoutMs))
      .catch(() => undefined);
    await this.o.clients.coordination
      .deleteNamespacedLease({ name, namespace: ns }, deadline(this.timeoutMs))
      .catch(() => undefined);
    this.o.caches.leases.forget(name);
  }
}
