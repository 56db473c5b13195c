import type { V1Lease } from "@kubernetes/client-node";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Scrubber } from "../exec/executor.ts";
import { isConflict, type K8sFailure, k8sFailure } from "../k8s/errors.ts";
import { ArrivalRate } from "../pool-state/arrival-rate.ts";
import { type Clock, systemClock } from "../pool-state/clock.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { claimedLease, holderOf, tenantOf } from "../pool-state/lease-record.ts";
import { type PodEndings, podEndedError } from "../pool-state/pod-endings.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import { networkAnnotation } from "../pool-state/sandbox-record.ts";
import { CandidateChooser } from "./candidates.ts";
import { type Held, holderIdentity, newHeld } from "./held.ts";
import { LeaseRelease } from "./release.ts";
import { LeaseRenewal } from "./renewal.ts";
import { LeaseStats } from "./stats.ts";
import type { AcquireRequest, LeaseHandle, RecycleMode } from "./types.ts";
import { type Waiter, WaitQueue } from "./wait-queue.ts";

export interface LeaseManagerOptions {
  store: PoolStore;
  bus: EventBus;
  /** Where caught, not rethrown errors go (one warn line each). */
  log: FailureLog;
  namespace: string;
  agentId: string;
  leaseTtlSeconds: number;
  queueTimeoutSeconds: number;
  /** Optional hard cap on a tenant's concurrent leases; 0 = none. */
  tenantMaxLeases: number;
  /**
   * A tenant's share of the pool: the most leases one tenant holds, so that the rest of the pool is
   * always there for other tenants (pods held for long cannot be taken back). 0 = no share rule.
   */
  tenantShareLeases?: number;
  recycle: RecycleMode;
  /** Required unless recycle is "replace". */
  scrubber?: Scrubber | undefined;
  /** Per API call. */
  requestTimeoutMs?: number;
  /** Compare-and-swaps in flight at once from this replica (default 16). */
  maxParallelAcquires?: number;
  /** How long to leave a pod freed by another replica to that replica's own waiters (default 50 ms). */
  handoffGraceMs?: number;
  random?: () => number;
  clock?: Clock;
  /** Pods that failed (evicted, OOM-killed): a handle's `ended` tells a broken call why. */
  endings?: PodEndings;
}

/**
 * Hands out sandbox pods with Lease compare-and-swap. Candidates come from the watch-fed caches
 * only; waiting callers sit in a per-replica queue woken by cache changes. A free pod goes to the
 * waiting tenant that holds the fewest leases (counted from every replica's Leases in the cache),
 * FIFO within a tenant, ties to the oldest waiter. This module is the queue and its dispatch rules; renewal (renewal.ts) keeps held leases alive and release
 * (release.ts) recycles the pod (replace or scrub) and always completes.
 */
export class LeaseManager {
  readonly stats = new LeaseStats();
  private readonly queue = new WaitQueue<Waiter>();
  private readonly held = new Map<string, Held>();
  private readonly inFlightByTenant = new Map<string, number>();
  private readonly chooser: CandidateChooser;
  private dispatchScheduled = false;
  /** Waiters with a CAS in flight. */
  private readonly serving = new Set<Waiter>();
  private readonly maxParallel: number;
  private closed = false;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly timeoutMs: number;
  private readonly clock: Clock;
  private readonly renewal: LeaseRenewal;
  private readonly releaser: LeaseRelease;
  /** Acquisitions that waited in the queue and were served: the demand the pool should grow for. */
  private readonly arrivals: ArrivalRate;
  /** Tenants skipped at their cap by the last dispatch: their waiters need no new pod. */
  private cappedTenants = new Set<string>();

  constructor(private readonly o: LeaseManagerOptions) {
    if (o.recycle !== "replace" && !o.scrubber) throw new Error(`RECYCLE=${o.recycle} needs a Scrubber`);
    this.clock = o.clock ?? systemClock;
    this.timeoutMs = o.requestTimeoutMs ?? 5_000;
    this.arrivals = new ArrivalRate(5_000, () => this.clock.now());
    this.chooser = new CandidateChooser({
      store: o.store,
      agentId: o.agentId,
      clock: this.clock,
      handoffGraceMs: o.handoffGraceMs ?? 50,
      random: o.random ?? Math.random,
      isHeld: (n) => this.held.has(n),
      wake: () => this.wake(),
    });
    this.maxParallel = o.maxParallelAcquires ?? 16;
    const common = { store: o.store, bus: o.bus, clock: this.clock, log: o.log, timeoutMs: this.timeoutMs };
    this.renewal = new LeaseRenewal(common);
    this.releaser = new LeaseRelease({
      ...common,
      namespace: o.namespace,
      recycle: o.recycle,
      scrubber: o.scrubber,
      renewal: this.renewal,
      sameTenant: {
        wantsNext: (tenant) => this.nextWaiter(tenant)?.tenant === tenant,
        takeNext: (tenant) => {
          const w = this.nextWaiter(tenant);
          if (w?.tenant !== tenant) return undefined;
          this.serving.add(w);
          return w;
        },
        serve: (w, h, lease, casMs) => {
          this.serving.delete(w);
          // The same pod, same address: it was held until this hand-off.
          this.handOut(w, h.pod, h.podIP, lease, casMs);
        },
        giveBack: (w) => {
          this.serving.delete(w);
          this.wake();
        },
      },
      onDone: (h) => {
        // A pod handed straight to the next holder is already that holder's entry.
        if (this.held.get(h.pod) === h) this.held.delete(h.pod);
        this.wake();
      },
    });
    // Any change can free a pod (release, lease freed or deleted, pod turning Ready): wake the queue.
    this.unsubscribe.push(
      o.store.leases.onChange((c) => {
        this.chooser.onLeaseChange(c);
        this.wake();
      }),
    );
    this.unsubscribe.push(o.store.pods.onChange(() => this.wake()));
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  /**
   * What this replica needs from the pool: waiters that found no free pod at all (not those held
   * back by their tenant's cap, nor those slowed by a failing API while pods are free), per tenant
   * all waiters, and the rate of such waiters served.
   */
  demand(): { queued: number; arrivalsPerSecond: number; tenants: Record<string, number> } {
    const tenants: Record<string, number> = {};
    let queued = 0;
    for (const w of this.queue.entries()) {
      if (w.settled) continue;
      tenants[w.tenant] = (tenants[w.tenant] ?? 0) + 1;
      if (!w.starved || this.serving.has(w) || this.cappedTenants.has(w.tenant)) continue;
      queued++;
    }
    return { queued, arrivalsPerSecond: this.arrivals.perSecond(), tenants };
  }

  queueWaiters(): Array<{ requestId: string; tenant: string; waitedMs: number }> {
    const now = this.clock.now();
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
        holder: req.holder ?? holderIdentity(this.o.agentId, req.requestId),
        network: req.network && networkAnnotation(req.network),
        ttlSeconds: req.leaseSeconds ?? this.o.leaseTtlSeconds,
        enqueuedAt: this.clock.now(),
        signal: req.signal,
        settled: false,
        queuedEmitted: false,
        starved: false,
        resolve,
        cleanup: () => undefined,
      };
      const timer = this.clock.setTimeout(() => this.timeOut(w), this.o.queueTimeoutSeconds * 1000);
      const onAbort = () =>
        this.settle(w, err(new AppError("request_cancelled", "request cancelled while waiting")), "aborted");
      req.signal?.addEventListener("abort", onAbort, { once: true });
      w.cleanup = () => {
        this.clock.clearTimeout(timer);
        req.signal?.removeEventListener("abort", onAbort);
      };
      this.queue.push(w);
      this.wake();
    });
  }

  /** Stop serving: waiters get shutting_down, held leases are released. */
  async shutdown(): Promise<void> {
    this.closed = true;
    this.chooser.stop();
    for (const u of this.unsubscribe) u();
    for (const w of this.queue.entries())
      this.settle(w, err(new AppError("shutting_down", "the agent is shutting down")), "shutdown");
    await Promise.all([...this.held.values()].map((h) => this.releaser.release(h)));
  }

  /**
   * Stop managing a held lease without releasing it, for a new holder that takes the Lease over by
   * CAS (a sandbox: cluster-agent/sandboxes). Renewal stops; the handle's release becomes a no-op.
   * Returns the Lease as last written by us, or undefined if it is not held here (or being lost).
   */
  async detach(pod: string): Promise<V1Lease | undefined> {
    const h = this.held.get(pod);
    if (!h || h.releasing || h.lost.signal.aborted) return undefined;
    h.releasing = Promise.resolve();
    await this.renewal.stop(h);
    this.held.delete(pod);
    this.wake();
    return h.lease;
  }

  /** Names of pods this replica holds right now (for the snapshot and tests). */
  heldPods(): string[] {
    return [...this.held.keys()];
  }

  // ---------- queue ----------

  private timeOut(w: Waiter): void {
    if (w.settled) return;
    this.stats.queueTimeouts++;
    const waited = this.clock.now() - w.enqueuedAt;
    this.o.bus.emit({
      type: "queue.timeout",
      requestId: w.requestId,
      tenant: w.tenant,
      data: { waitedMs: Math.round(waited) },
    });
    const retryAfterSeconds = Math.max(1, Math.ceil(this.o.leaseTtlSeconds / 3));
    if (this.atCap(this.heldByTenant(w.tenant))) {
      // Pods may have been free: what kept this caller waiting was its own tenant's cap or share.
      const message = `tenant ${w.tenant} held ${this.tenantCap} leases (${this.capName}) for ${this.o.queueTimeoutSeconds} s`;
      this.settle(w, err(new AppError("tenant_lease_limit", message, { retryAfterSeconds })), "timeout");
      return;
    }
    const message = `no sandbox became free within ${this.o.queueTimeoutSeconds} s`;
    this.settle(w, err(new AppError("queue_timeout", message, { retryAfterSeconds })), "timeout");
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
        data: { reason, waitedMs: Math.round(this.clock.now() - w.enqueuedAt), depth: this.queue.length },
      });
    }
    w.resolve(r);
  }

  private heldByTenant(tenant: string): number {
    return this.heldByTenants().get(tenant) ?? 0;
  }

  /** Leases held per tenant across every replica (the cache), plus our CASes in flight. */
  private heldByTenants(): Map<string, number> {
    const n = new Map(this.inFlightByTenant);
    for (const l of this.o.store.leases.list()) {
      const t = holderOf(l) ? tenantOf(l) : undefined;
      if (t !== undefined) n.set(t, (n.get(t) ?? 0) + 1);
    }
    return n;
  }

  /** The most leases one tenant may hold: the smaller of TENANT_MAX_LEASES and its pool share. */
  private get tenantCap(): number {
    const caps = [this.o.tenantMaxLeases, this.o.tenantShareLeases ?? 0].filter((n) => n > 0);
    return caps.length === 0 ? 0 : Math.min(...caps);
  }

  private get capName(): string {
    const share = this.o.tenantShareLeases ?? 0;
    return share > 0 && (this.o.tenantMaxLeases === 0 || share < this.o.tenantMaxLeases)
      ? "its share of the pool, TENANT_POOL_SHARE_PERCENT"
      : "TENANT_MAX_LEASES";
  }

  private atCap(held: number): boolean {
    const cap = this.tenantCap;
    return cap > 0 && held >= cap;
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
   * Give free pods to waiters, fewest-held tenant first (FIFO within a tenant, ties to the oldest
   * waiter), skipping tenants at their cap, each waiter its own candidate, up to maxParallel
   * compare-and-swaps in flight. A waiter whose CAS loses goes back to waiting at its place and
   * the dispatch runs again.
   */
  private dispatch(): void {
    if (this.closed) return;
    const capped = new Set<string>();
    const held = this.heldByTenants();
    const byTenant = this.waitingByTenant();
    let candidates: string[] | undefined;
    let next = 0;
    while (this.serving.size < this.maxParallel) {
      const { pick, pickHeld } = this.fairPick(byTenant, held, capped);
      if (!pick) break;
      candidates ??= this.chooser.next();
      const name = candidates[next++];
      if (name === undefined) {
        // No free pod for this waiter, nor for anyone else. If the cache has none either, the
        // remaining eligible waiters are demand the pool must grow for.
        if (this.chooser.freeInCache() === 0)
          for (const [tenant, list] of byTenant)
            if (!this.atCap(held.get(tenant) ?? 0)) for (const w of list) w.starved = true;
        break;
      }
      byTenant.get(pick.tenant)?.shift();
      if (this.startServe(pick, name)) held.set(pick.tenant, pickHeld + 1);
    }
    for (const [tenant, list] of byTenant)
      if (list.length > 0 && this.atCap(held.get(tenant) ?? 0)) capped.add(tenant);
    this.cappedTenants = capped;
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

  /** Per tenant, its waiters not being served, in arrival order (the queue is FIFO). */
  private waitingByTenant(): Map<string, Waiter[]> {
    const byTenant = new Map<string, Waiter[]>();
    for (const w of this.queue.entries()) {
      if (w.settled || this.serving.has(w)) continue;
      const list = byTenant.get(w.tenant);
      if (list) list.push(w);
      else byTenant.set(w.tenant, [w]);
    }
    return byTenant;
  }

  /** The waiter served next: fewest-held tenant not at its cap, ties to the oldest; capped tenants are added to `capped`. */
  private fairPick(
    byTenant: Map<string, Waiter[]>,
    held: Map<string, number>,
    capped: Set<string>,
  ): { pick: Waiter | undefined; pickHeld: number } {
    let pick: Waiter | undefined;
    let pickHeld = 0;
    for (const [tenant, list] of byTenant) {
      const first = list[0];
      if (!first) continue;
      const h = held.get(tenant) ?? 0;
      if (this.atCap(h)) {
        capped.add(tenant);
        continue;
      }
      if (!pick || h < pickHeld || (h === pickHeld && first.enqueuedAt < pick.enqueuedAt)) {
        pick = first;
        pickHeld = h;
      }
    }
    return { pick, pickHeld };
  }

  /**
   * Who the fair queue serves next once a pod of `releasing` is released (that pod still counts
   * in its tenant's leases until then): the same-tenant reuse asks this before and after a scrub.
   */
  private nextWaiter(releasing: string): Waiter | undefined {
    if (this.closed) return undefined;
    const held = this.heldByTenants();
    held.set(releasing, Math.max(0, (held.get(releasing) ?? 0) - 1));
    return this.fairPick(this.waitingByTenant(), held, new Set()).pick;
  }

  /** One CAS for one waiter on one candidate; the outcome is settled before any other dispatch runs. */
  private startServe(w: Waiter, name: string): boolean {
    const lease = this.o.store.leases.get(name);
    // A candidate is Ready, so it has an IP; checked again here because the pipeline sends to it.
    const podIP = this.o.store.pods.get(name)?.status?.podIP;
    if (!lease || !podIP) return false;
    this.serving.add(w);
    this.chooser.reserve(name);
    this.inFlightByTenant.set(w.tenant, (this.inFlightByTenant.get(w.tenant) ?? 0) + 1);
    const casStartedAt = this.clock.now();
    void this.casAcquire(lease, w).then((result) => {
      this.serving.delete(w);
      const n = (this.inFlightByTenant.get(w.tenant) ?? 1) - 1;
      if (n <= 0) this.inFlightByTenant.delete(w.tenant);
      else this.inFlightByTenant.set(w.tenant, n);
      if (result.ok) {
        this.chooser.settled(name);
        this.handOut(w, name, podIP, result.value, this.clock.now() - casStartedAt);
      } else {
        const f = result.error;
        // Lost: skip this pod until the cache shows a newer version of its Lease (or its deletion).
        // No verdict (outage, 5xx): try it again shortly.
        if (isConflict(f)) this.chooser.settled(name, { resourceVersion: lease.metadata?.resourceVersion });
        else this.chooser.failed(name);
        if (!isConflict(f)) {
          logFailure(this.o.log, "acquire failed", new Error(f.message), {
            requestId: w.requestId,
            pod: name,
          });
        } else {
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
    return true;
  }

  private async casAcquire(lease: V1Lease, w: Waiter): Promise<Result<V1Lease, K8sFailure>> {
    const body = claimedLease(lease, {
      holder: w.holder,
      durationSeconds: w.ttlSeconds,
      tenant: w.tenant,
      requestId: w.requestId,
      network: w.network,
    });
    try {
      return ok(await this.o.store.replaceLease(body, this.timeoutMs, "acquire lease"));
    } catch (e) {
      return err(k8sFailure(e));
    }
  }

  private handOut(w: Waiter, name: string, podIP: string, lease: V1Lease, casMs: number): void {
    const now = this.clock.now();
    const h = newHeld({ ...w, pod: name, podIP, lease, now });
    this.held.set(name, h);
    if (w.settled) {
      // The caller left (abort / timeout) while our CAS was in flight: give the pod straight back.
      void this.releaser.freeUnused(h);
      return;
    }
    const queueMs = now - w.enqueuedAt;
    this.stats.recordAcquire(queueMs);
    // Only callers that had to wait for a pod to exist: requests slowed or failed by an API outage
    // (pods free in the cache, CAS failing) never inflate the pool.
    if (w.starved) this.arrivals.record();
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
        leaseDurationSeconds: h.ttlSeconds,
        resourceVersion: lease.metadata?.resourceVersion,
      },
    });
    this.renewal.schedule(h);
    const handle: LeaseHandle = {
      pod: name,
      podIP: h.podIP,
      namespace: this.o.namespace,
      fence: h.fence,
      requestId: w.requestId,
      tenant: w.tenant,
      queueMs,
      casMs,
      lost: h.lost.signal,
      release: () => this.releaser.release(h),
    };
    const endings = this.o.endings;
    if (endings)
      handle.ended = async (waitMs) => {
        const e = await endings.waitFor(name, waitMs);
        // This request's pod: never name a sandbox (whatever the memory holds under that name).
        return e && podEndedError({ ...e, sandbox: undefined });
      };
    this.settle(w, ok(handle), "served");
  }
}
