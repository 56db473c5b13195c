import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import type { EventBus } from "../events/bus.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { deletePodAndLease } from "../pool-state/delete-pod-and-lease.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { POOL_LABELS } from "../pool-state/labels.ts";
import {
  claimedLease,
  holderOf,
  keptForTenantOf,
  parseHolder,
  recordKey,
  requestIdOf,
  tenantOf,
} from "../pool-state/lease-record.ts";
import { ObservedExpiry } from "../pool-state/observed-expiry.ts";
import { podFailure } from "../pool-state/pod-failure.ts";
import { isFinished, isPodReady, isPoolMember } from "../pool-state/pod-state.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import { isSandboxLease, sandboxIdOf, sandboxLifetimeOver } from "../pool-state/sandbox-record.ts";
import type { CreateBudget } from "./create-budget.ts";
import { type Demand, type PoolCounts, type ScaleDecision, ScalePolicy } from "./scale-policy.ts";

export interface PoolControllerOptions {
  clients: KubeClients;
  caches: PoolStore;
  bus: EventBus;
  log: FailureLog;
  namespace: string;
  /** Free, Ready pods kept warm. */
  poolSize: number;
  /** Cap on every sandbox pod (free, held, starting); default: no cap beyond poolSize + demand. */
  maxPods?: number;
  maxCreatePerSecond?: number;
  scaleDownAfterSeconds?: number;
  /** Queue demand summed over the replicas (default: none, the warm target alone). */
  demand?: () => Demand;
  leaseTtlSeconds: number;
  podReadyTimeoutSeconds: number;
  /** A fresh, random pod name (`sandbox-xxxxx`). */
  podName: () => string;
  /** Builds the sandbox Pod of that name (its exec token is bound to the name). */
  podTemplate: (name: string) => V1Pod;
  /** How long a pod may live without its Lease (or a Lease without its pod) before it is an orphan. */
  orphanGraceMs?: number;
  resyncMs?: number;
  requestTimeoutMs?: number;
  /**
   * The leader's create budget, published on its leader Lease (create-budget.ts): creates start
   * only within it and its predecessor's count against the cap. Without one (a controller run
   * without election), creates are bounded by the scale policy alone.
   */
  budget?: CreateBudget;
  /** Ask the leader elector for an early renewal: the budget is short of what the policy wants. */
  renewLeader?: () => void;
  now?: () => number;
}

/**
 * Keeps POOL_SIZE free, Ready pods warm, each with its Lease, and grows the pool with demand up to
 * POOL_MAX_PODS (scale-policy.ts decides; this applies it). Runs on the leader only. Everything is
 * judged from the watch-fed caches and from *our* observation times (no clock comparison with the
 * server): a pod not Ready for the deadline, a held Lease unchanged for its duration (its holder's
 * agent died), a pod without Lease or a Lease without pod for the orphan grace.
 */
export class PoolController {
  private poolSize: number;
  private readonly firstSeen = new Map<string, number>();
  /** Pods we have seen Ready once: only pods that never got Ready fall under the readiness deadline. */
  private readonly everReady = new Set<string>();
  private readonly orphanSince = new Map<string, number>();
  private readonly expiry: ObservedExpiry;
  /** Pods created by us whose Lease is not in the cache yet. */
  private readonly creating = new Set<string>();
  /** Creates in flight (their names are not known until the server answers). */
  private pendingCreates = 0;
  /**
   * Creates that got no answer twice, by name → when we gave up: the server may still create them
   * (a loaded one handles a request its client stopped waiting for). They count against
   * POOL_MAX_PODS until their pod shows up in the watch or twice the call budget has passed.
   */
  private readonly unanswered = new Map<string, number>();
  private readonly deleting = new Set<string>();
  /** Failed pods already reported (a recycle that fails is retried; its failure is told once). */
  private readonly failedReported = new Set<string>();
  /** Recent recycles with their reason (for diagnostics). */
  readonly recycled: Array<{ name: string; reason: string }> = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private active = false;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly policy: ScalePolicy;
  /** When each pod we created was created (our clock), until it is first seen Ready. */
  private readonly createdAt = new Map<string, number>();
  private lastScale: { reason: string; refusal?: string | undefined } | undefined;
  /** The last decision wanted more pods than there are (free + starting). */
  private shortOfPods = false;
  /** The last counts, for the snapshot and metrics. */
  private counts: PoolCounts & { held: number } = { free: 0, starting: 0, total: 0, held: 0 };

  constructor(private readonly o: PoolControllerOptions) {
    this.poolSize = o.poolSize;
    this.now = o.now ?? (() => performance.now());
    this.expiry = new ObservedExpiry(this.now);
    this.timeoutMs = o.requestTimeoutMs ?? 5_000;
    this.policy = new ScalePolicy({
      poolSize: o.poolSize,
      maxPods: o.maxPods ?? Number.MAX_SAFE_INTEGER,
      maxCreatePerSecond: o.maxCreatePerSecond ?? 32,
      scaleDownAfterMs: (o.scaleDownAfterSeconds ?? 60) * 1000,
    });
    const maxPods = o.maxPods ?? Number.MAX_SAFE_INTEGER;
    o.budget?.bind({
      callTimeoutMs: this.timeoutMs,
      maxInFlight: this.policy.maxStartConcurrency,
      maxPods,
      // A pool short of pods asks for room to start its start limit; a settled one only keeps what
      // is in flight (a successor reserves nothing for a leader that was creating nothing).
      load: () => ({
        inFlight: this.inFlight,
        want: this.shortOfPods ? this.policy.startConcurrency : 0,
        capRoom: Math.max(0, maxPods - this.counts.total),
      }),
      onRaised: () => this.kick(),
    });
  }

  /** Our creates that may still land: in flight, or unanswered and still awaited. */
  private get inFlight(): number {
    return this.pendingCreates + this.unanswered.size;
  }

  /** May a create attempt be sent now: leading, and within the renew deadline of the budget's last write. */
  private mayCreate(): boolean {
    return this.active && (this.o.budget?.mayStart() ?? true);
  }

  /** Free / held / starting / total sandbox pods as the last reconcile counted them. */
  get podCounts(): PoolCounts & { held: number } {
    return { ...this.counts };
  }

  get isActive(): boolean {
    return this.active;
  }

  get size(): number {
    return this.poolSize;
  }

  setPoolSize(n: number): void {
    this.poolSize = Math.max(0, Math.floor(n));
    this.policy.setPoolSize(this.poolSize, this.now());
    this.kick();
  }

  start(): void {
    if (this.active) return;
    this.active = true;
    // Observation clocks restart with leadership: a new leader waits a full duration before expiring anything.
    this.firstSeen.clear();
    this.orphanSince.clear();
    for (const n of this.expiry.names()) this.expiry.forget(n);
    this.policy.reset(this.now());
    this.lastScale = undefined;
    this.unsubscribe.push(this.o.caches.pods.onChange(() => this.kick()));
    this.unsubscribe.push(this.o.caches.leases.onChange(() => this.kick()));
    this.tick();
  }

  async stop(): Promise<void> {
    this.active = false;
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.running) await new Promise((r) => setTimeout(r, 10));
  }

  private tick(): void {
    if (!this.active) return;
    this.kick();
    this.timer = setTimeout(() => this.tick(), this.o.resyncMs ?? 500);
  }

  private kick(): void {
    if (!this.active) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void (async () => {
      try {
        do {
          this.again = false;
          await this.reconcile();
        } while (this.again && this.active);
      } catch (e) {
        logFailure(this.o.log, "pool reconcile failed; the next tick retries", e);
      } finally {
        this.running = false;
      }
    })();
  }

  private async reconcile(): Promise<void> {
    const now = this.now();
    const pods = this.o.caches.pods.list();
    const leases = this.o.caches.leases.list();
    const podByName = new Map(pods.map((p) => [p.metadata?.name ?? "", p]));
    const leaseByName = new Map(leases.map((l) => [l.metadata?.name ?? "", l]));
    const work: Array<Promise<unknown>> = [];

    for (const name of [...this.firstSeen.keys()]) if (!podByName.has(name)) this.firstSeen.delete(name);
    for (const name of [...this.createdAt.keys()])
      if (!podByName.has(name) && !this.creating.has(name)) this.createdAt.delete(name);
    for (const name of [...this.everReady]) if (!podByName.has(name)) this.everReady.delete(name);
    for (const name of [...this.failedReported]) if (!podByName.has(name)) this.failedReported.delete(name);
    for (const name of this.expiry.names()) if (!leaseByName.has(name)) this.expiry.forget(name);

    for (const [name, since] of this.unanswered)
      if (podByName.has(name) || now - since >= 2 * this.timeoutMs) this.unanswered.delete(name);
    this.o.budget?.sawPods(podByName.keys());

    const members: V1Pod[] = [];
    for (const pod of pods) {
      const name = pod.metadata?.name ?? "";
      if (!this.firstSeen.has(name)) this.firstSeen.set(name, now);
      if (this.deleting.has(name)) continue;
      if (!isPoolMember(pod)) {
        if (isFinished(pod) && !pod.metadata?.deletionTimestamp) {
          this.reportFailure(pod, leaseByName.get(name));
          work.push(this.recycle(name, "finished"));
        }
        continue;
      }
      const lease = leaseByName.get(name);
      const age = now - (this.firstSeen.get(name) ?? now);
      if (isPodReady(pod)) this.everReady.add(name);
      // Waiting for room is not failing (nor slow) to start: the readiness deadline and the start-up
      // time the policy learns from run from being scheduled.
      else if (isUnschedulable(pod)) {
        this.firstSeen.set(name, now);
        if (this.createdAt.has(name)) this.createdAt.set(name, now);
      } else if (!this.everReady.has(name) && age >= this.o.podReadyTimeoutSeconds * 1000) {
        work.push(this.recycle(name, "not ready in time"));
        continue;
      }
      if (!lease) {
        if (this.creating.has(name)) {
          members.push(pod);
          continue;
        }
        const since = this.orphanSince.get(name) ?? now;
        this.orphanSince.set(name, since);
        if (now - since >= (this.o.orphanGraceMs ?? 3_000)) {
          work.push(this.recycle(name, "pod without lease"));
          continue;
        }
        members.push(pod);
        continue;
      }
      this.orphanSince.delete(name);
      this.creating.delete(name);
      if (holderOf(lease)) {
        const durationMs = (lease.spec?.leaseDurationSeconds ?? this.o.leaseTtlSeconds) * 1000;
        const expired = this.expiry.isExpired(name, recordKey(lease), durationMs);
        // A sandbox's Lease expires when idle (duration = idle timeout) or past its max lifetime.
        if (expired || sandboxLifetimeOver(lease, Date.now())) {
          if (isSandboxLease(lease))
            this.o.bus.emit({
              type: "sandbox.expired",
              pod: name,
              tenant: tenantOf(lease),
              data: { sandboxId: sandboxIdOf(lease) ?? "", reason: expired ? "idle" : "max lifetime" },
            });
          const holder = parseHolder(holderOf(lease));
          this.o.bus.emit({
            type: "lease.expired",
            pod: name,
            requestId: requestIdOf(lease) ?? holder?.requestId,
            tenant: tenantOf(lease),
            data: { holder: holderOf(lease), fence: lease.spec?.leaseTransitions ?? 0, recycle: "replace" },
          });
          this.o.caches.attributeDeletion(name, {
            requestId: requestIdOf(lease) ?? holder?.requestId,
            tenant: tenantOf(lease),
            reason: "lease expired",
          });
          work.push(this.recycle(name, "lease expired", lease));
          continue;
        }
      } else if (keptForTenantOf(lease) !== undefined) {
        // A pod scrubbed for one tenant is never free for another: nothing frees it, but if
        // something did (an older agent, a hand edit), it is replaced, not handed out.
        work.push(this.recycle(name, "free pod kept for a tenant"));
        continue;
      } else {
        this.expiry.observe(name, recordKey(lease));
      }
      members.push(pod);
    }

    // Leases whose pod is gone (or was never there) for the grace: delete them.
    for (const lease of leases) {
      const name = lease.metadata?.name ?? "";
      if (podByName.has(name) || this.deleting.has(name)) continue;
      const key = `lease:${name}`;
      const since = this.orphanSince.get(key) ?? now;
      this.orphanSince.set(key, since);
      // Its `since` stays until the Lease is gone from the cache: a delete that failed is retried
      // by the next reconcile.
      if (now - since >= (this.o.orphanGraceMs ?? 3_000)) work.push(this.deleteOrphanLease(name));
    }
    for (const key of [...this.orphanSince.keys()]) {
      if (key.startsWith("lease:") && !leaseByName.has(key.slice(6))) this.orphanSince.delete(key);
      else if (!key.startsWith("lease:") && !podByName.has(key)) this.orphanSince.delete(key);
    }

    // Pods we are deleting (since an earlier pass or this one) that the server has not marked
    // Terminating yet: still pods, still under the cap.
    let deletingLive = 0;
    for (const name of this.deleting) {
      const pod = podByName.get(name);
      if (pod && isPoolMember(pod)) deletingLive++;
    }
    this.scale(now, members, deletingLive, leaseByName, work);
    await Promise.all(work);
  }

  /**
   * A finished pod that failed (evicted, OOM-killed, …): one pod.failed event with the kubelet's
   * reason and message, and sandbox.expired for the sandbox that lived on it, so the dashboard and
   * metrics say why it went. (Its callers learn it from their own replica's PodEndings.)
   */
  private reportFailure(pod: V1Pod, lease: V1Lease | undefined): void {
    const name = pod.metadata?.name ?? "";
    const failure = podFailure(pod);
    if (!failure || this.failedReported.has(name)) return;
    this.failedReported.add(name);
    const sandboxId = isSandboxLease(lease) ? (sandboxIdOf(lease) ?? null) : null;
    const tenant = lease ? tenantOf(lease) : undefined;
    const requestId = lease ? requestIdOf(lease) : undefined;
    this.o.log.warn(
      { pod: name, requestId, reason: failure.reason, error: failure.message, sandboxId },
      "pod failed",
    );
    this.o.bus.emit({ type: "pod.failed", pod: name, tenant, requestId, data: { ...failure, sandboxId } });
    if (sandboxId !== null)
      this.o.bus.emit({
        type: "sandbox.expired",
        pod: name,
        tenant,
        data: { sandboxId, reason: "pod failed" },
      });
    this.o.caches.attributeDeletion(name, { requestId, tenant, reason: `pod failed (${failure.reason})` });
  }

  /**
   * Free = Ready with a free Lease; held = any holder (a request or a long-lived sandbox); the rest
   * is starting. Held pods do not count toward the warm target, all of them toward POOL_MAX_PODS —
   * and so do pods being deleted but not yet Terminating and creates that may still land: the cap
   * is on pods that exist, not on the ones we are counting on.
   */
  private scale(
    now: number,
    members: V1Pod[],
    deletingLive: number,
    leaseByName: Map<string, V1Lease>,
    work: Array<Promise<unknown>>,
  ): void {
    const free: V1Pod[] = [];
    let held = 0;
    const maybeCreated = this.inFlight;
    let starting = maybeCreated;
    let unschedulable = 0;
    for (const p of members) {
      const name = p.metadata?.name ?? "";
      const lease = leaseByName.get(name);
      const ready = isPodReady(p);
      if (ready) this.observeStartup(name, now);
      if (lease && holderOf(lease)) held++;
      else if (lease && ready) free.push(p);
      else {
        starting++;
        if (isUnschedulable(p)) unschedulable++;
      }
    }
    // A predecessor's creates that may still land count against the cap, not as pods on the way
    // (if its requests died with it, the warm target is not left short until they would have).
    const inherited = this.o.budget?.reserved() ?? 0;
    const counts = {
      free: free.length,
      starting,
      unschedulable,
      total: members.length + maybeCreated + deletingLive + inherited,
      ...(this.o.budget ? { createBudget: this.o.budget.room(maybeCreated) } : {}),
    };
    this.counts = { ...counts, held };
    const demand = this.o.demand?.() ?? { queued: 0, arrivalsPerSecond: 0 };
    const d = this.policy.decide(now, counts, demand);
    this.shortOfPods = d.wanted > counts.free + counts.starting;
    this.report(d, counts, held, demand);
    if (d.reason === "leader budget") this.o.renewLeader?.();
    for (let i = 0; i < d.create; i++) work.push(this.createPod());
    if (d.remove > 0) {
      for (const p of free.slice(0, d.remove)) {
        const name = p.metadata?.name ?? "";
        work.push(this.scaleDown(name, leaseByName.get(name)));
      }
    }
  }

  /** One pool.scale event per decision that changes something (or a new reason), not one per tick. */
  private report(d: ScaleDecision, counts: PoolCounts, held: number, demand: Demand): void {
    const changed = d.reason !== this.lastScale?.reason || d.refusal !== this.lastScale?.refusal;
    if (d.create === 0 && d.remove === 0 && !changed) return;
    this.lastScale = { reason: d.reason, refusal: d.refusal };
    this.o.bus.emit({
      type: "pool.scale",
      data: {
        reason: d.reason,
        create: d.create,
        remove: d.remove,
        free: counts.free,
        held,
        starting: counts.starting,
        unschedulable: counts.unschedulable ?? 0,
        total: counts.total,
        wanted: d.wanted,
        queued: demand.queued,
        arrivalsPerSecond: Math.round(demand.arrivalsPerSecond * 100) / 100,
        ...(d.backoffMs !== undefined ? { backoffMs: d.backoffMs } : {}),
        ...(d.refusal !== undefined ? { refusal: d.refusal } : {}),
      },
    });
  }

  private observeStartup(name: string, now: number): void {
    const at = this.createdAt.get(name);
    if (at === undefined) return;
    this.createdAt.delete(name);
    this.policy.observeStartup(now - at, now);
  }

  private async createPod(): Promise<void> {
    this.pendingCreates++;
    const startedAt = this.now();
    const pod = await this.createNamedPod();
    if (!pod) {
      this.pendingCreates--;
      return;
    }
    this.policy.created();
    const name = pod.metadata?.name ?? "";
    this.createdAt.set(name, startedAt);
    this.creating.add(name);
    this.o.caches.pods.observe(pod);
    this.pendingCreates--;
    this.o.bus.emit({ type: "pod.created", pod: name, data: { uid: pod.metadata?.uid } });
    const lease: V1Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name,
        namespace: this.o.namespace,
        labels: { ...POOL_LABELS },
        ownerReferences: [
          { apiVersion: "v1", kind: "Pod", name, uid: pod.metadata?.uid ?? "", controller: false },
        ],
      },
      spec: { leaseDurationSeconds: this.o.leaseTtlSeconds, leaseTransitions: 0 },
    };
    try {
      const created = await this.o.clients.coordination.createNamespacedLease(
        { namespace: this.o.namespace, body: lease },
        deadline(this.timeoutMs),
      );
      this.o.caches.leases.observe(created);
    } catch (e) {
      logFailure(this.o.log, "create lease failed; the pod is left for the orphan rule", e, { pod: name });
      this.creating.delete(name);
    }
  }

  /**
   * Creates one sandbox pod under a name of ours (its exec token is bound to the name). A taken name
   * (409 on the first try) gets another name. A create without an answer (timeout, reset, 5xx) may
   * still have happened, so it is retried under the SAME name: a 409 then means our earlier attempt
   * landed and the pod is read back and adopted — never left for the orphan rule, never counted as a
   * refusal. Once only: a second create without an answer means the API is down, and the next
   * reconcile (every tick) tries again — a create slot held through an outage's backoff would delay
   * the pool's recovery after it. A refusal (403 quota, 422, 429) backs growth off (createFailed).
   * Whenever it gives up after an attempt without answer, that name stays counted (`unanswered`):
   * the attempt may still land. No attempt is sent once we stopped leading or passed the renew
   * deadline our published budget was written for.
   */
  private async createNamedPod(): Promise<V1Pod | undefined> {
    let name = this.o.podName();
    let unanswered = 0;
    const giveUp = () => {
      if (unanswered > 0) this.unanswered.set(name, this.now());
      return undefined;
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      if (!this.mayCreate()) return giveUp();
      this.o.budget?.sent(name);
      const sent = this.now();
      try {
        const pod = await this.o.clients.core.createNamespacedPod(
          { namespace: this.o.namespace, body: this.o.podTemplate(name) },
          deadline(this.timeoutMs),
        );
        this.policy.createAnswered(this.now() - sent, this.now());
        return pod;
      } catch (e) {
        const f = k8sFailure(e);
        this.policy.createAnswered(this.now() - sent, this.now());
        if (f.code === 409 && unanswered > 0) return (await this.adopt(name)) ?? giveUp();
        if (f.code === 409) {
          name = this.o.podName();
          continue;
        }
        if (f.code === 403 || f.code === 422 || f.code === 429) {
          this.createFailed(f.code, f.message);
          return giveUp();
        }
        unanswered++;
        if (unanswered >= 2) {
          logFailure(this.o.log, "create pod got no answer twice; the next reconcile tries again", e, {
            pod: name,
          });
          return giveUp();
        }
        logFailure(this.o.log, "create pod got no answer; retrying under the same name", e, { pod: name });
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    return giveUp();
  }

  /**
   * Our pod, created by an attempt whose answer was lost: taken from the watch (no extra verb in the
   * Role), which delivers it within the call budget or not at all (then the orphan rule removes it).
   */
  private async adopt(name: string): Promise<V1Pod | undefined> {
    const until = this.now() + this.timeoutMs;
    for (;;) {
      const pod = this.o.caches.pods.get(name);
      if (pod) return pod;
      if (this.now() >= until || !this.active) {
        this.o.log.warn(
          { pod: name },
          "a pod whose create answer was lost is not in the watch; left for the orphan rule",
        );
        return undefined;
      }
      await new Promise<void>((resolve) => {
        const off = this.o.caches.pods.onChange(() => {
          off();
          clearTimeout(t);
          resolve();
        });
        const t = setTimeout(() => {
          off();
          resolve();
        }, 100);
      });
    }
  }

  /**
   * Quota exceeded or forbidden (403), invalid (422), throttled (429): stop growing and back off
   * (1 s doubling to 30 s, reset by the next create that goes through); say why once per backoff step.
   */
  private createFailed(code: number, message: string): void {
    const refusal = `${code === 0 ? "no answer" : code}: ${message}`.slice(0, 300);
    const { backoffMs, fresh } = this.policy.refused(this.now(), refusal);
    if (!fresh) return;
    this.o.log.warn(
      { code, error: message, backoffMs },
      "create pod refused; the pool stops growing and retries",
    );
    const c = this.counts;
    this.o.bus.emit({
      type: "pool.scale",
      data: {
        reason: "create refused",
        create: 0,
        remove: 0,
        free: c.free,
        held: c.held,
        starting: c.starting,
        unschedulable: c.unschedulable ?? 0,
        total: c.total,
        wanted: 0,
        queued: 0,
        arrivalsPerSecond: 0,
        backoffMs,
        refusal,
      },
    });
  }

  /**
   * A free pod may be in the middle of being acquired by some replica: claim its Lease by CAS first
   * (a 409 means someone took it, so it is not removed), then delete it.
   */
  private async scaleDown(name: string, lease: V1Lease | undefined): Promise<void> {
    if (!lease) return this.recycle(name, "scale down");
    let claimed: V1Lease;
    try {
      claimed = await this.o.caches.replaceLease(
        claimedLease(lease, { holder: "pool-controller/scale-down" }),
        this.timeoutMs,
        "claim lease",
      );
    } catch (e) {
      // Taken by a replica (409) or unreachable: it stays; the next reconcile looks again.
      if (!isConflict(k8sFailure(e))) logFailure(this.o.log, "scale-down claim failed", e, { pod: name });
      return;
    }
    await this.recycle(name, "scale down", claimed);
  }

  /**
   * Delete pod and Lease (replace): the next reconcile brings a fresh pod. With `lease`, the Lease
   * delete is conditional on what we judged (expired, claimed): a renewal that lands meanwhile wins.
   */
  private async recycle(name: string, reason: string, lease?: V1Lease): Promise<void> {
    if (this.deleting.has(name)) return;
    this.deleting.add(name);
    try {
      const done = await deletePodAndLease(this.o.caches, name, {
        timeoutMs: this.timeoutMs,
        log: this.o.log,
        leaseResourceVersion: lease?.metadata?.resourceVersion,
      });
      if (!done) return;
      // pod.deleted itself comes from the cache once the kubelet has really removed the pod.
      this.recycled.push({ name, reason });
      if (this.recycled.length > 100) this.recycled.shift();
    } finally {
      this.deleting.delete(name);
    }
  }

  private async deleteOrphanLease(name: string): Promise<void> {
    this.deleting.add(name);
    try {
      await this.o.caches.deleteLease(name, this.timeoutMs);
    } catch (e) {
      // 404: already gone. Anything else: the Lease stays in the cache, so a later reconcile retries.
      if (isNotFound(k8sFailure(e))) this.o.caches.leases.forget(name);
      else
        logFailure(this.o.log, "delete of an orphan lease failed; the next reconcile retries", e, {
          pod: name,
        });
    } finally {
      this.deleting.delete(name);
    }
  }
}

/** Pending because the scheduler found no node with room, as kube-scheduler marks it. */
function isUnschedulable(p: V1Pod): boolean {
  if (p.spec?.nodeName) return false;
  return (p.status?.conditions ?? []).some(
    (c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable",
  );
}
