import type { V1Lease } from "@kubernetes/client-node";
import { AppError } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow, toMicroTime } from "../k8s/microtime.ts";
import type { Clock } from "../pool-state/clock.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { holderOf, transitionsOf } from "../pool-state/lease-record.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import type { Held } from "./held.ts";

export interface LeaseRenewalOptions {
  store: PoolStore;
  bus: EventBus;
  clock: Clock;
  log: FailureLog;
  timeoutMs: number;
}

/**
 * Keeps held leases alive: a CAS renewal every third of the lease's duration. A lease that was deleted or taken over, or
 * whose renewals keep failing until it would have expired, is marked lost: its `lost` signal
 * fires and the running command is killed.
 */
export class LeaseRenewal {
  constructor(private readonly o: LeaseRenewalOptions) {}

  private periodMs(h: Held): number {
    return Math.max(100, (h.ttlSeconds * 1000) / 3);
  }

  schedule(h: Held): void {
    h.renewTimer = this.o.clock.setTimeout(() => {
      h.renewing = this.renew(h).finally(() => {
        h.renewing = undefined;
        if (!h.releasing && !h.lost.signal.aborted) this.schedule(h);
      });
    }, this.periodMs(h));
  }

  /** Stop renewing (release took over) and wait for a renewal in flight. */
  async stop(h: Held): Promise<void> {
    this.o.clock.clearTimeout(h.renewTimer);
    await h.renewing; // renew() handles its own errors
  }

  markLost(h: Held, reason: string, data: Record<string, unknown> = {}): void {
    if (h.lost.signal.aborted) return;
    this.o.clock.clearTimeout(h.renewTimer);
    h.lost.abort(new AppError("lease_lost", `lease on ${h.pod} lost: ${reason}`));
    this.o.bus.emit({
      type: "lease.lost",
      requestId: h.requestId,
      tenant: h.tenant,
      pod: h.pod,
      data: { reason, fence: h.fence, ...data },
    });
  }

  /** The Lease as the server has it now; undefined when it is gone or unreadable (logged). */
  async readLease(h: Held): Promise<V1Lease | undefined> {
    try {
      return await this.o.store.readLease(h.pod, this.o.timeoutMs);
    } catch (e) {
      if (!isNotFound(k8sFailure(e)))
        logFailure(this.o.log, "read lease failed", e, { requestId: h.requestId, pod: h.pod });
      return undefined;
    }
  }

  private async renew(h: Held): Promise<void> {
    if (h.releasing || h.lost.signal.aborted) return;
    for (let attempt = 0; attempt < 3; attempt++) {
      const body: V1Lease = {
        ...h.lease,
        spec: { ...h.lease.spec, acquireTime: toMicroTime(h.lease.spec?.acquireTime), renewTime: microNow() },
      };
      try {
        const updated = await this.o.store.replaceLease(body, this.o.timeoutMs, "renew lease");
        if (h.releasing) return; // release took over meanwhile; it re-reads what it needs
        h.lease = updated;
        h.lastRenewOk = this.o.clock.now();
        this.o.bus.emit({
          type: "lease.renewed",
          requestId: h.requestId,
          tenant: h.tenant,
          pod: h.pod,
          data: { fence: h.fence, leaseDurationSeconds: h.ttlSeconds },
        });
        return;
      } catch (e) {
        const f = k8sFailure(e);
        if (isNotFound(f)) return this.markLost(h, "lease deleted");
        if (isConflict(f)) {
          // Someone wrote the Lease: still ours (e.g. our own earlier write raced) → retry; else it was taken.
          const current = await this.readLease(h);
          if (!current) return this.markLost(h, "lease deleted");
          if (holderOf(current) !== h.holder || transitionsOf(current) !== h.fence) {
            return this.markLost(h, "lease taken over", {
              holder: holderOf(current),
              fence: transitionsOf(current),
            });
          }
          h.lease = current;
          continue;
        }
        logFailure(this.o.log, "lease renewal failed", e, { requestId: h.requestId, pod: h.pod });
        // Transient error: keep trying at the next period unless the lease would have expired by then.
        const ttlMs = h.ttlSeconds * 1000;
        if (this.o.clock.now() - h.lastRenewOk + ttlMs / 3 >= ttlMs) {
          // The API server's words are in the log line above; the reason reaches the caller.
          return this.markLost(h, "renewal failing");
        }
        return;
      }
    }
  }
}
