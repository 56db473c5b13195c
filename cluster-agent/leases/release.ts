import type { V1Lease } from "@kubernetes/client-node";
import { AppError, err, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Scrubber } from "../exec/executor.ts";
import { isConflict, k8sFailure } from "../k8s/errors.ts";
import type { Clock } from "../pool-state/clock.ts";
import { deletePodAndLease } from "../pool-state/delete-pod-and-lease.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import {
  claimedLease,
  freedLease,
  holderOf,
  keptForTenantOf,
  transitionsOf,
} from "../pool-state/lease-record.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import type { Held } from "./held.ts";
import type { LeaseRenewal } from "./renewal.ts";
import type { RecycleMode } from "./types.ts";
import type { Waiter } from "./wait-queue.ts";

/** The manager's side of RECYCLE=reuse-same-tenant: its fair queue decides who is next. */
export interface SameTenantQueue {
  /** Whether the fair queue would serve a waiter of `tenant` next, counting this release. */
  wantsNext(tenant: string): boolean;
  /** That waiter, taken out of dispatch until `serve` or `giveBack`; undefined if it is not of `tenant` any more. */
  takeNext(tenant: string): Waiter | undefined;
  /** The Lease is the waiter's now: hand it the pod. */
  serve(w: Waiter, h: Held, lease: V1Lease, casMs: number): void;
  /** The hand-off did not happen: the waiter goes back to waiting at its place. */
  giveBack(w: Waiter): void;
}

export interface LeaseReleaseOptions {
  store: PoolStore;
  bus: EventBus;
  log: FailureLog;
  namespace: string;
  recycle: RecycleMode;
  scrubber?: Scrubber | undefined;
  /** Required with RECYCLE=reuse-same-tenant. */
  sameTenant?: SameTenantQueue | undefined;
  renewal: LeaseRenewal;
  clock: Clock;
  timeoutMs: number;
  /** Called once the pod is no longer ours (freed, replaced or lost): the manager forgets it and dispatches. */
  onDone: (h: Held) => void;
}

/**
 * Ends a held lease and recycles its pod: `replace` deletes pod and Lease (a fresh pod follows),
 * `scrub` resets the pod, verifies it is clean and frees the Lease (falling back to replace),
 * `reuse-same-tenant` scrubs it and moves the Lease straight to the next waiter when that waiter
 * is of the same tenant (the pod is never free in between), and replaces it in every other case.
 * Idempotent and never throws; callable after the caller's response went out.
 */
export class LeaseRelease {
  constructor(private readonly o: LeaseReleaseOptions) {}

  release(h: Held): Promise<void> {
    if (!h.releasing) {
      // The moment the holder stopped using the pod: every later holder's acquisition comes after it.
      h.usedUntil = new Date().toISOString();
      h.releasing = this.recycle(h).catch((e: unknown) =>
        logFailure(this.o.log, "release failed", e, { requestId: h.requestId, pod: h.pod }),
      );
    }
    return h.releasing;
  }

  /** The caller left before using the pod: free the Lease without recycling (nothing ran in it). */
  freeUnused(h: Held): Promise<void> {
    h.usedUntil = new Date().toISOString();
    h.releasing = (async () => {
      try {
        if (!(await this.clearHolder(h))) await this.replace(h);
        this.emitReleased(h, { heldMs: 0, recycle: "none", unused: true });
      } finally {
        this.o.onDone(h);
      }
    })().catch((e: unknown) =>
      logFailure(this.o.log, "free of an unused lease failed", e, { requestId: h.requestId, pod: h.pod }),
    );
    return h.releasing;
  }

  private async recycle(h: Held): Promise<void> {
    await this.o.renewal.stop(h);
    const heldMs = Math.round(this.o.clock.now() - h.acquiredAt);
    try {
      if (h.lost.signal.aborted) {
        // Not ours any more: the controller recycles the pod; touching it could hurt the new holder.
        this.emitReleased(h, { heldMs, recycle: "none", lost: true });
        return;
      }
      if (this.o.recycle === "reuse-same-tenant") return await this.reuseOrReplace(h, heldMs);
      if (this.o.recycle === "scrub") {
        const scrubbed = await this.scrub(h);
        if (scrubbed.ok && (await this.clearHolder(h))) {
          this.emitReleased(h, { heldMs, recycle: "scrub", ...scrubbed.value });
          return;
        }
        await this.replace(h, "scrub failed");
        this.emitReleased(h, {
          heldMs,
          recycle: "replace",
          scrubFailed: scrubbed.ok ? "free failed" : scrubbed.error.message,
        });
        return;
      }
      await this.replace(h, "recycle replace");
      this.emitReleased(h, { heldMs, recycle: "replace" });
    } finally {
      this.o.onDone(h);
    }
  }

  /** /reset + /inspect through the scrubber; a failure is logged (the caller replaces the pod). */
  private async scrub(h: Held): Promise<Result<{ killed: number; removed: number }>> {
    const scrubber = this.o.scrubber;
    const scrubbed = scrubber
      ? await scrubber
          .scrub({ namespace: this.o.namespace, pod: h.pod, podIP: h.podIP, fence: h.fence })
          .catch((e: unknown) => err(new AppError("sandbox_failed", String(e))))
      : err(new AppError("sandbox_failed", "no scrubber configured"));
    if (!scrubbed.ok)
      logFailure(this.o.log, "scrub failed; replacing the pod", scrubbed.error, {
        requestId: h.requestId,
        pod: h.pod,
      });
    return scrubbed;
  }

  /**
   * Same-tenant reuse: scrub only when the fair queue's next waiter is of h's tenant, then move the
   * Lease from h's holder to that waiter by one CAS (the fence goes up by one, the Lease is marked
   * as kept for the tenant). Anything else — another tenant next, no waiter left after the scrub, a
   * failed scrub, a lost CAS — replaces the pod: it never changes tenant, and it is never freed.
   */
  private async reuseOrReplace(h: Held, heldMs: number): Promise<void> {
    const queue = this.o.sameTenant;
    if (!queue?.wantsNext(h.tenant)) {
      await this.replace(h, "recycle replace");
      this.emitReleased(h, { heldMs, recycle: "replace" });
      return;
    }
    const scrubbed = await this.scrub(h);
    if (!scrubbed.ok) {
      await this.replace(h, "scrub failed");
      this.emitReleased(h, { heldMs, recycle: "replace", scrubFailed: scrubbed.error.message });
      return;
    }
    const w = queue.takeNext(h.tenant);
    if (w && w.tenant === h.tenant) {
      const startedAt = this.o.clock.now();
      const lease = await this.casOurs(h, "hand lease over", (l) =>
        claimedLease(l, {
          holder: w.holder,
          durationSeconds: w.ttlSeconds,
          tenant: w.tenant,
          requestId: w.requestId,
          keptForTenant: h.tenant,
          network: w.network,
        }),
      );
      if (lease) {
        this.emitReleased(h, { heldMs, recycle: "scrub", ...scrubbed.value, handedTo: w.requestId });
        queue.serve(w, h, lease, this.o.clock.now() - startedAt);
        return;
      }
      queue.giveBack(w);
    } else if (w) queue.giveBack(w);
    await this.replace(h, "no waiter of the same tenant after scrub");
    this.emitReleased(h, { heldMs, recycle: "replace" });
  }

  private emitReleased(
    h: Held,
    data: { heldMs: number; recycle: "none" | "scrub" | "replace" } & Record<string, unknown>,
  ): void {
    this.o.bus.emit({
      type: "lease.released",
      requestId: h.requestId,
      tenant: h.tenant,
      pod: h.pod,
      data: { ...data, usedUntil: h.usedUntil, fence: h.fence },
    });
  }

  private async replace(h: Held, reason?: string): Promise<void> {
    if (reason) this.o.store.attributeDeletion(h.pod, { requestId: h.requestId, tenant: h.tenant, reason });
    await deletePodAndLease(this.o.store, h.pod, {
      timeoutMs: this.o.timeoutMs,
      log: this.o.log,
      requestId: h.requestId,
    });
  }

  /**
   * CAS the holder away (keeping leaseTransitions, the fence, monotonic). False if it was not ours
   * any more, or if the pod is kept for a tenant: such a pod is never freed for anyone (replace it).
   */
  private async clearHolder(h: Held): Promise<boolean> {
    if (keptForTenantOf(h.lease) !== undefined) return false;
    return (await this.casOurs(h, "free lease", freedLease)) !== undefined;
  }

  /** One compare-and-swap from the Lease as we hold it; undefined if it was not ours any more. */
  private async casOurs(h: Held, what: string, body: (l: V1Lease) => V1Lease): Promise<V1Lease | undefined> {
    let lease: V1Lease | undefined = h.lease;
    for (let attempt = 0; attempt < 3 && lease; attempt++) {
      if (holderOf(lease) !== h.holder || transitionsOf(lease) !== h.fence) return undefined;
      try {
        return await this.o.store.replaceLease(body(lease), this.o.timeoutMs, what);
      } catch (e) {
        if (!isConflict(k8sFailure(e))) {
          logFailure(this.o.log, `${what} failed`, e, { requestId: h.requestId, pod: h.pod });
          return undefined;
        }
        lease = await this.o.renewal.readLease(h);
      }
    }
    return undefined;
  }
}
