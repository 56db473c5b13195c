import type { V1Lease } from "@kubernetes/client-node";
import type { EventBus } from "../events/bus.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow, toMicroTime } from "../k8s/microtime.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { LEADER_LEASE_NAME } from "../pool-state/labels.ts";
import { recordKey } from "../pool-state/lease-record.ts";
import { ObservedExpiry } from "../pool-state/observed-expiry.ts";

/** The shortest round: below this a call against a loaded API server cannot succeed anyway. */
const MIN_ROUND_MS = 1000;

export interface LeaderElectorOptions {
  clients: KubeClients;
  bus: EventBus;
  log: FailureLog;
  namespace: string;
  identity: string;
  leaseDurationSeconds: number;
  /** How often a follower looks at the record and the leader renews it (default duration/6; client-go: 2 s of 15). */
  retryPeriodMs?: number;
  /**
   * An annotation the leader writes with every write of its record (create-budget.ts): `next` is
   * asked for the value just before a write is sent, `landed` told once it landed, and `takeover`
   * given the record a new leader replaces (with when we first saw it unchanged).
   */
  note?: LeaderNote;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  now?: () => number;
}

export interface LeaderNote {
  readonly key: string;
  /** We take over a record carrying `value`, first seen unchanged by us at `observedAt`; its holder acted for `actsForMs` after a renewal. */
  takeover(value: string | undefined, observedAt: number, actsForMs: number): void;
  /** The value for a write after which we act as leader for `actsForMs` (0: giving the lease up). */
  next(actsForMs: number): string;
  /** The write carrying `value` landed; we act as leader until `actsUntil` (our clock) unless renewed. */
  landed(value: string, actsUntil: number): void;
}

/** The renew deadline: a leader that could not renew for 2/3 of the duration stops acting as one (client-go). */
const RENEW_DEADLINE = 2 / 3;

/** Early renewals (renewSoon) are at least this far apart: a failing API is not hammered. */
const MIN_EARLY_GAP_MS = 250;

/**
 * Leader election over the `pi-sandbox-pool-leader` Lease, as client-go does it: a follower takes
 * over only when the record has not changed *as it observed it* for a lease duration (no clock
 * comparison), by CAS PUT with leaseTransitions+1; the leader renews every retry period and steps
 * down when it cannot renew within the renew deadline (2/3 of the duration).
 *
 * Under a burst the API server answers slowly (the leader's own pod creates and every replica's
 * Lease writes queue there): a renewal round may use all the time left before the renew deadline
 * (a slow answer that still lands in time keeps the lease — a fixed per-call timeout of a third of
 * the lease threw such answers away, and with a round every third of the lease the next came too
 * late). Renewing every retry period, as client-go does, leaves one call up to 2/3 − 1/6 of the
 * lease (7.5 s of 15) instead of 1/3.
 */
export class LeaderElector {
  private readonly expiry: ObservedExpiry;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private lastRoundAt = Number.NEGATIVE_INFINITY;
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

  /**
   * A renewal now rather than at the next period (the controller's budget is short of what it
   * wants to start): unless a round is running or one began less than MIN_EARLY_GAP_MS ago.
   */
  renewSoon(): void {
    if (this.stopped || !this.leading || this.running) return;
    if (this.now() - this.lastRoundAt < MIN_EARLY_GAP_MS) return;
    if (this.timer) clearTimeout(this.timer);
    this.loop();
  }

  private loop(): void {
    if (this.stopped) return;
    const began = this.now();
    this.lastRoundAt = began;
    this.running = this.tryAcquireOrRenew()
      .catch((e: unknown) => logFailure(this.o.log, "leader election round failed", e))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        // From the round's start: a slow round is followed at once, not a whole period later.
        // Jitter so followers do not poll in lockstep.
        const period = (this.o.retryPeriodMs ?? this.durationMs / 6) * (0.9 + Math.random() * 0.2);
        this.timer = setTimeout(() => this.loop(), Math.max(50, period - (this.now() - began)));
      });
  }

  private setLeading(v: boolean): void {
    if (this.leading === v) return;
    this.leading = v;
    this.o.bus.emit({ type: "pool.leader", data: { leader: v, identity: this.o.identity } });
    if (v) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  /**
   * One round's end (read and write share it): a leader may use what is left of its renew deadline
   * (at least MIN_ROUND_MS); a follower a third of the lease.
   */
  private roundEnd(startedAt: number): number {
    if (!this.leading) return startedAt + Math.max(MIN_ROUND_MS, this.durationMs / 3);
    const renewDeadline = this.lastRenew + this.durationMs * RENEW_DEADLINE;
    return Math.max(startedAt + MIN_ROUND_MS, renewDeadline);
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const api = this.o.clients.coordination;
    const ns = this.o.namespace;
    // What a renewal proves is that the record changed after this moment: the leader counts its
    // renew deadline from here, not from the answer (which may come long after the write landed).
    const startedAt = this.now();
    const end = this.roundEnd(startedAt);
    const budget = () => deadline(Math.max(1, end - this.now()));
    let current: V1Lease | undefined;
    try {
      current = await api.readNamespacedLease({ name: LEADER_LEASE_NAME, namespace: ns }, budget());
    } catch (e) {
      const f = k8sFailure(e);
      if (!isNotFound(f)) return this.renewFailed("read leader lease", e);
      const now = microNow();
      const note = this.noteFor(undefined);
      try {
        await api.createNamespacedLease(
          {
            namespace: ns,
            body: {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: {
                name: LEADER_LEASE_NAME,
                namespace: ns,
                ...(note ? { annotations: note.annotations } : {}),
              },
              spec: {
                holderIdentity: this.o.identity,
                leaseDurationSeconds: this.o.leaseDurationSeconds,
                acquireTime: now,
                renewTime: now,
                leaseTransitions: 0,
              },
            },
          },
          budget(),
        );
        this.renewed(startedAt, note?.value);
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
    // Taking over (from another holder, an empty record or our own earlier life): what its holder
    // may still have in flight is told by the record it left.
    if (this.o.note && (!this.leading || !mine))
      this.o.note.takeover(
        current.metadata?.annotations?.[this.o.note.key],
        this.expiry.observe(LEADER_LEASE_NAME, key),
        (current.spec?.leaseDurationSeconds ?? this.o.leaseDurationSeconds) * 1000 * RENEW_DEADLINE,
      );
    const note = this.noteFor(current);
    const body: V1Lease = {
      ...current,
      ...(note ? { metadata: { ...current.metadata, annotations: note.annotations } } : {}),
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
      const updated = await api.replaceNamespacedLease(
        { name: LEADER_LEASE_NAME, namespace: ns, body },
        budget(),
      );
      this.expiry.observe(LEADER_LEASE_NAME, recordKey(updated));
      this.renewed(startedAt, note?.value);
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

  private renewed(startedAt: number, noteValue: string | undefined): void {
    this.lastRenew = startedAt;
    if (noteValue !== undefined) this.o.note?.landed(noteValue, startedAt + this.durationMs * RENEW_DEADLINE);
    this.setLeading(true);
  }

  /** The note's value for a write that makes us leader for the renew deadline, merged into the record's annotations. */
  private noteFor(
    current: V1Lease | undefined,
    actsForMs = this.durationMs * RENEW_DEADLINE,
  ): { value: string; annotations: Record<string, string> } | undefined {
    const note = this.o.note;
    if (!note) return undefined;
    const value = note.next(actsForMs);
    return { value, annotations: { ...(current?.metadata?.annotations ?? {}), [note.key]: value } };
  }

  /** client-go's renew deadline: a leader that could not renew for 2/3 of the duration stops acting as one. */
  private renewFailed(what: string, e: unknown): void {
    logFailure(this.o.log, `${what} failed`, e);
    if (this.leading && this.now() - this.lastRenew >= this.durationMs * RENEW_DEADLINE)
      this.setLeading(false);
  }

  private async giveUp(): Promise<void> {
    const api = this.o.clients.coordination;
    const budget = deadline(Math.max(1000, this.durationMs / 3));
    const current = await api.readNamespacedLease(
      { name: LEADER_LEASE_NAME, namespace: this.o.namespace },
      budget,
    );
    if (current.spec?.holderIdentity !== this.o.identity) return;
    // What we may still have in flight (we start no more), for whoever takes over next.
    const note = this.noteFor(current, 0);
    await api.replaceNamespacedLease(
      {
        name: LEADER_LEASE_NAME,
        namespace: this.o.namespace,
        body: {
          ...current,
          ...(note ? { metadata: { ...current.metadata, annotations: note.annotations } } : {}),
          spec: {
            ...current.spec,
            holderIdentity: undefined,
            acquireTime: toMicroTime(current.spec?.acquireTime),
            renewTime: microNow(),
            leaseDurationSeconds: 1,
          },
        },
      },
      budget,
    );
  }
}
