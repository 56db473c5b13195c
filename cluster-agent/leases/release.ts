import type { V1Lease } from "@kubernetes/client-node";
import { AppError, err } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Scrubber } from "../exec/executor.ts";
import { isConflict, k8sFailure } from "../k8s/errors.ts";
import type { Clock } from "../pool-state/clock.ts";
import { deletePodAndLease } from "../pool-state/delete-pod-and-lease.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { freedLease, holderOf, transitionsOf } from "../pool-state/lease-record.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import type { Held } from "./held.ts";
import type { LeaseRenewal } from "./renewal.ts";

export interface LeaseReleaseOptions {
  store: PoolStore;
  bus: EventBus;
  log: FailureLog;
  namespace: string;
  recycle: "replace" | "scrub";
  scrubber?: Scrubber | undefined;
  renewal: LeaseRenewal;
  clock: Clock;
  timeoutMs: number;
  /** Called once the pod is no longer ours (freed, replaced or lost): the manager forgets it and dispatches. */
  onDone: (h: Held) => void;
}

/**
 * Ends a held lease and recycles its pod: `replace` deletes pod and Lease (a fresh pod follows),
 * `scrub` resets the pod, verifies it is clean and frees the Lease (falling back to replace).
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
      if (this.o.recycle === "scrub" && this.o.scrubber) {
        const scrubbed = await this.o.scrubber
          .scrub({ namespace: this.o.namespace, pod: h.pod, podIP: h.podIP, fence: h.fence })
          .catch((e: unknown) => err(new AppError("sandbox_failed", String(e))));
        if (scrubbed.ok && (await this.clearHolder(h))) {
          this.emitReleased(h, { heldMs, recycle: "scrub", ...scrubbed.value });
          return;
        }
        if (!scrubbed.ok)
          logFailure(this.o.log, "scrub failed; replacing the pod", scrubbed.error, {
            requestId: h.requestId,
            pod: h.pod,
          });
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

  /** CAS the holder away (keeping leaseTransitions, the fence, monotonic). False if it was not ours any more. */
  private async clearHolder(h: Held): Promise<boolean> {
    let lease: V1Lease | undefined = h.lease;
    for (let attempt = 0; attempt < 3 && lease; attempt++) {
      if (holderOf(lease) !== h.holder || transitionsOf(lease) !== h.fence) return false;
      try {
        await this.o.store.replaceLease(freedLease(lease), this.o.timeoutMs, "free lease");
        return true;
      } catch (e) {
        if (!isConflict(k8sFailure(e))) {
          logFailure(this.o.log, "free lease failed", e, { requestId: h.requestId, pod: h.pod });
          return false;
        }
        lease = await this.o.renewal.readLease(h);
      }
    }
    return false;
  }
}
