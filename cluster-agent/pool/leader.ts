import type { V1Lease } from "@kubernetes/client-node";
import type { EventBus } from "../events/bus.ts";
import type { KubeClients } from "../k8s/client.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow, toMicroTime } from "../k8s/microtime.ts";
import { withTimeout } from "../k8s/with-timeout.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { LEADER_LEASE_NAME } from "../pool-state/labels.ts";
import { recordKey } from "../pool-state/lease-record.ts";
import { ObservedExpiry } from "../pool-state/observed-expiry.ts";

export interface LeaderElectorOptions {
  clients: KubeClients;
  bus: EventBus;
  log: FailureLog;
  namespace: string;
  identity: string;
  leaseDurationSeconds: number;
  /** How often a follower looks at the record (default duration/6); the leader renews every duration/3. */
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  now?: () => number;
}

/**
 * Leader election over the `pi-sandbox-pool-leader` Lease, as client-go does it: a follower takes
 * over only when the record has not changed *as it observed it* for a lease duration (no clock
 * comparison), by CAS PUT with leaseTransitions+1; the leader renews every duration/3 and steps down
 * when it cannot renew within the renew deadline (2/3 of the duration).
 */
export class LeaderElector {
  private readonly expiry: ObservedExpiry;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private stopped = true;
  private running: Promise<void> | undefined;
  private readonly durationMs: number;
  private readonly now: () => number;

  constructor(private readonly o: LeaderElectorOptions) {
    this.now = o.now ?? (() => performance.now());
    this.expiry = new ObservedExpiry(this.now);
    this.durationMs = o.leaseDurationSeconds * 1000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  /** Stop; a leader gives the lease up (clears the holder) so a successor need not wait a duration. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running; // tryAcquireOrRenew handles its own errors
    if (this.leading) {
      this.setLeading(false);
      // Best effort: without it a successor waits one lease duration instead.
      await this.giveUp().catch((e: unknown) =>
        logFailure(this.o.log, "giving up the leader lease failed", e),
      );
    }
  }

  private loop(): void {
    if (this.stopped) return;
    this.running = this.tryAcquireOrRenew()
      .catch((e: unknown) => logFailure(this.o.log, "leader election round failed", e))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        const period = this.leading ? this.durationMs / 3 : (this.o.retryPeriodMs ?? this.durationMs / 6);
        // Jitter so followers do not poll in lockstep.
        this.timer = setTimeout(() => this.loop(), Math.max(50, period * (0.9 + Math.random() * 0.2)));
      });
  }

  private setLeading(v: boolean): void {
    if (this.leading === v) return;
    this.leading = v;
    this.o.bus.emit({ type: "pool.leader", data: { leader: v, identity: this.o.identity } });
    if (v) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const api = this.o.clients.coordination;
    const ns = this.o.namespace;
    const timeoutMs = Math.max(1000, this.durationMs / 3);
    let current: V1Lease | undefined;
    try {
      current = await withTimeout(
        api.readNamespacedLease({ name: LEADER_LEASE_NAME, namespace: ns }),
        timeoutMs,
        "read leader lease",
      );
    } catch (e) {
      const f = k8sFailure(e);
      if (!isNotFound(f)) return this.renewFailed("read leader lease", e);
      const now = microNow();
      try {
        await withTimeout(
          api.createNamespacedLease({
            namespace: ns,
            body: {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: { name: LEADER_LEASE_NAME, namespace: ns },
              spec: {
                holderIdentity: this.o.identity,
                leaseDurationSeconds: this.o.leaseDurationSeconds,
                acquireTime: now,
                renewTime: now,
                leaseTransitions: 0,
              },
            },
          }),
          timeoutMs,
          "create leader lease",
        );
        this.lastRenew = this.now();
        this.setLeading(true);
      } catch (e) {
        this.renewFailed("create leader lease", e);
      }
      return;
    }
    const holder = current.spec?.holderIdentity ?? "";
    const key = recordKey(current);
    const expired = this.expiry.isExpired(
      LEADER_LEASE_NAME,
      key,
      (current.spec?.leaseDurationSeconds ?? this.o.leaseDurationSeconds) * 1000,
    );
    if (holder && holder !== this.o.identity && !expired) {
      // Someone else leads (and we may have believed we did: we lost it).
      this.setLeading(false);
      return;
    }
    const now = microNow();
    const mine = holder === this.o.identity;
    const body: V1Lease = {
      ...current,
      spec: {
        ...current.spec,
        holderIdentity: this.o.identity,
        leaseDurationSeconds: this.o.leaseDurationSeconds,
        acquireTime: mine ? (toMicroTime(current.spec?.acquireTime) ?? now) : now,
        renewTime: now,
        leaseTransitions: (current.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1),
      },
    };
    try {
      const updated = await withTimeout(
        api.replaceNamespacedLease({ name: LEADER_LEASE_NAME, namespace: ns, body }),
        timeoutMs,
        "renew leader lease",
      );
      this.expiry.observe(LEADER_LEASE_NAME, recordKey(updated));
      this.lastRenew = this.now();
      this.setLeading(true);
    } catch (e) {
      if (isConflict(k8sFailure(e))) {
        // Another replica wrote first; only a leader that is sure it lost steps down at once.
        if (!mine) this.setLeading(false);
        else this.renewFailed("renew leader lease", e);
        return;
      }
      this.renewFailed("renew leader lease", e);
    }
  }

  /** client-go's renew deadline: a leader that could not renew for 2/3 of the duration stops acting as one. */
  private renewFailed(what: string, e: unknown): void {
    logFailure(this.o.log, `${what} failed`, e);
    if (this.leading && this.now() - this.lastRenew >= (this.durationMs * 2) / 3) this.setLeading(false);
  }

  private async giveUp(): Promise<void> {
    const api = this.o.clients.coordination;
    const timeoutMs = Math.max(1000, this.durationMs / 3);
    const current = await withTimeout(
      api.readNamespacedLease({ name: LEADER_LEASE_NAME, namespace: this.o.namespace }),
      timeoutMs,
      "read leader lease",
    );
    if (current.spec?.holderIdentity !== this.o.identity) return;
    const release = api.replaceNamespacedLease({
      name: LEADER_LEASE_NAME,
      namespace: this.o.namespace,
      body: {
        ...current,
        spec: {
          ...current.spec,
          holderIdentity: undefined,
          acquireTime: toMicroTime(current.spec?.acquireTime),
          renewTime: microNow(),
          leaseDurationSeconds: 1,
        },
      },
    });
    await withTimeout(release, timeoutMs, "give up leader lease");
  }
}
