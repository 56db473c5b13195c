/**
 * How many sandbox pods the leader creates or removes, as a pure function of what it counted, the
 * demand the replicas published and time. No I/O: the controller applies the decision and reports
 * back (created, refused, observed start-up). Unit-tested with a fake clock.
 */

export interface ScalePolicyOptions {
  /** Free, Ready pods kept warm (POOL_SIZE). */
  poolSize: number;
  /** Cap on every sandbox pod: free, held (incl. long-lived sandboxes) and starting (POOL_MAX_PODS). */
  maxPods: number;
  /** Create budget (POOL_MAX_CREATE_PER_SECOND), a token bucket of one second's worth. */
  maxCreatePerSecond: number;
  /** Free pods above POOL_SIZE are removed only after this long without demand. */
  scaleDownAfterMs: number;
  /** First guess of create → Ready until one is observed (ms). */
  initialStartupMs?: number;
  /**
   * Pods starting at once, at first (default 4) and at most (default maxCreatePerSecond). Between
   * the two the limit adapts (startedIn, createAnswered): starting everything at once on a busy
   * node makes the first pod as late as the last, so the pool starts a few, serves each waiter as
   * its pod turns Ready, and starts more as long as start-up stays fast.
   */
  initialStartLimit?: number;
  maxStartLimit?: number;
  /** An API answer slower than this (ms) means the control plane is loaded: start fewer (default 1000). */
  slowApiMs?: number;
  /** Backoff after a refused create: first and largest wait (ms). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

/** What the controller counted this round. */
export interface PoolCounts {
  /** Ready pods with a free Lease. */
  free: number;
  /** Created but not Ready (or without their Lease yet), plus creates in flight. */
  starting: number;
  /** Every sandbox pod that counts against POOL_MAX_PODS (free + held + starting). */
  total: number;
  /**
   * Of `starting`: pods the scheduler found no room for (`PodScheduled=False/Unschedulable`). They
   * start when room frees, so they count as wanted pods, but while any exists no pod is added.
   */
  unschedulable?: number;
  /**
   * Creates the leader may still start under the budget it published on its leader Lease
   * (create-budget.ts); absent: no such bound.
   */
  createBudget?: number;
}

/** Demand summed over the replicas. */
export interface Demand {
  /** Callers waiting for a pod (not those held back by their tenant's cap). */
  queued: number;
  /** Acquisitions that had to wait, per second (decaying; see demand.ts). */
  arrivalsPerSecond: number;
}

export type ScaleReason =
  | "steady"
  | "warm target"
  | "demand"
  | "max pods"
  | "create rate"
  | "start limit"
  | "leader budget"
  | "backoff"
  | "scale down"
  | "low demand"
  | "unschedulable";

export interface ScaleDecision {
  create: number;
  /** Free pods to remove (never a held one: the controller claims each by CAS first). */
  remove: number;
  /** Pods wanted (free + starting) for the warm target plus demand, before the caps. */
  wanted: number;
  reason: ScaleReason;
  /** Set while creates are held back after a refusal. */
  backoffMs?: number;
  refusal?: string;
}

const DEFAULT_STARTUP_MS = 1_500;

export class ScalePolicy {
  private poolSize: number;
  private tokens: number;
  private tokensAt: number | undefined;
  private lowSince: number | undefined;
  private backoffMs = 0;
  private backoffUntil = 0;
  private refusal: string | undefined;
  private startupMs: number;
  private startLimit: number;
  private readonly maxStartLimit: number;
  /** The fastest recent start-up: what a pod takes when it does not compete with other starts. */
  private fastestMs: number | undefined;
  private lastCut = Number.NEGATIVE_INFINITY;

  constructor(private readonly o: ScalePolicyOptions) {
    this.poolSize = o.poolSize;
    this.tokens = o.maxCreatePerSecond;
    this.startupMs = o.initialStartupMs ?? DEFAULT_STARTUP_MS;
    this.maxStartLimit = Math.max(1, Math.floor(o.maxStartLimit ?? o.maxCreatePerSecond));
    this.startLimit = Math.min(this.maxStartLimit, Math.max(1, Math.floor(o.initialStartLimit ?? 4)));
  }

  /** Pods the policy lets start at once now. */
  get startConcurrency(): number {
    return this.startLimit;
  }

  /** The most pods it ever lets start at once. */
  get maxStartConcurrency(): number {
    return this.maxStartLimit;
  }

  get size(): number {
    return this.poolSize;
  }

  get expectedStartupMs(): number {
    return this.startupMs;
  }

  /** An operator's change: free pods above the new target go at the next decision, without the wait. */
  setPoolSize(n: number, now: number): void {
    this.poolSize = Math.max(0, Math.floor(n));
    this.lowSince = now - this.o.scaleDownAfterMs;
  }

  /** A new leader has seen no demand yet: what it inherits above POOL_SIZE may go once it has looked. */
  reset(now: number): void {
    this.lowSince = now - this.o.scaleDownAfterMs;
    this.tokens = this.o.maxCreatePerSecond;
    this.tokensAt = now;
  }

  decide(now: number, counts: PoolCounts, demand: Demand): ScaleDecision {
    this.refill(now);
    const queued = Math.max(0, demand.queued);
    // Little's law: callers arriving while a new pod starts. The warm pods are there to serve them,
    // so the warm target is the larger of POOL_SIZE and that (a sum would count the same callers
    // twice and leave a surplus after every small queue). A decayed rate never reaches 0 exactly:
    // below a tenth of a pod it is none.
    const inFlight = Math.max(
      0,
      Math.ceil(Math.max(0, demand.arrivalsPerSecond) * (this.startupMs / 1000) - 0.1),
    );
    const wanted = Math.max(this.poolSize, inFlight) + queued;
    const have = counts.free + counts.starting;
    const shortBy = wanted - have;
    const highDemand = queued > 0 || shortBy > 0;
    if (highDemand || this.lowSince === undefined) this.lowSince = highDemand ? undefined : now;

    if (shortBy > 0) {
      // The nodes are full: another pod would only wait beside the ones already waiting.
      if ((counts.unschedulable ?? 0) > 0) return { create: 0, remove: 0, wanted, reason: "unschedulable" };
      const reason: ScaleReason = queued > 0 || inFlight > this.poolSize ? "demand" : "warm target";
      if (now < this.backoffUntil)
        return this.withRefusal({
          create: 0,
          remove: 0,
          wanted,
          reason: "backoff",
          backoffMs: this.backoffMs,
        });
      const room = Math.max(0, this.o.maxPods - counts.total);
      const budget = Math.floor(this.tokens);
      const startRoom = Math.max(0, this.startLimit - counts.starting);
      const leaderRoom = Math.max(0, counts.createBudget ?? Number.POSITIVE_INFINITY);
      const create = Math.min(shortBy, room, budget, startRoom, leaderRoom);
      this.tokens -= create;
      const capped: ScaleReason =
        create === room && room < shortBy
          ? "max pods"
          : create === startRoom && startRoom < budget
            ? "start limit"
            : create === leaderRoom && leaderRoom < Math.min(budget, startRoom)
              ? "leader budget"
              : "create rate";
      return { create, remove: 0, wanted, reason: create < shortBy ? capped : reason };
    }

    const excess = Math.min(counts.free - this.poolSize, have - wanted);
    if (excess > 0 && this.lowSince !== undefined) {
      if (now - this.lowSince >= this.o.scaleDownAfterMs)
        return { create: 0, remove: excess, wanted, reason: "scale down" };
      return { create: 0, remove: 0, wanted, reason: "low demand" };
    }
    return { create: 0, remove: 0, wanted, reason: "steady" };
  }

  /**
   * The API refused a create (quota, 403, 422): stop growing for 1 s, doubling to 30 s. `fresh` is
   * false for creates that were in flight together and failed together: one step for them all.
   */
  refused(now: number, why: string): { backoffMs: number; fresh: boolean } {
    this.refusal = why;
    if (now < this.backoffUntil) return { backoffMs: this.backoffMs, fresh: false };
    const min = this.o.backoffMinMs ?? 1_000;
    const max = this.o.backoffMaxMs ?? 30_000;
    this.backoffMs = this.backoffMs === 0 ? min : Math.min(max, this.backoffMs * 2);
    this.backoffUntil = now + this.backoffMs;
    return { backoffMs: this.backoffMs, fresh: true };
  }

  /** A create went through: the backoff starts over. */
  created(): void {
    this.backoffMs = 0;
    this.backoffUntil = 0;
    this.refusal = undefined;
  }

  /**
   * One pod's create → Ready time. Feeds the moving average Little's law uses, and the start limit:
   * a start within twice the fastest recent one means the node keeps up, so one more may start at
   * once (additive increase); a slower one means starts compete (for CPU, the API server, image
   * pulls), so the limit halves — at most once per fastest start-up, because the pods of one wave
   * all report slow together.
   */
  observeStartup(ms: number, now: number): void {
    if (!(ms > 0) || !Number.isFinite(ms)) return;
    this.startupMs = 0.8 * this.startupMs + 0.2 * ms;
    // The reference drifts up slowly when every start is slower (a busier node for good), so one
    // lucky start long ago does not hold the limit at 1.
    if (this.fastestMs === undefined || ms < this.fastestMs) this.fastestMs = ms;
    else this.fastestMs += 0.02 * (ms - this.fastestMs);
    if (ms <= 2 * this.fastestMs) this.startLimit = Math.min(this.maxStartLimit, this.startLimit + 1);
    else this.cut(now, this.fastestMs);
  }

  /** How long the API server took to answer a create: a slow answer means it is loaded, start fewer. */
  createAnswered(ms: number, now: number): void {
    if (ms > (this.o.slowApiMs ?? 1_000)) this.cut(now, ms);
  }

  private cut(now: number, cooldownMs: number): void {
    if (now - this.lastCut < cooldownMs) return;
    this.lastCut = now;
    this.startLimit = Math.max(1, Math.floor(this.startLimit / 2));
  }

  private withRefusal(d: ScaleDecision): ScaleDecision {
    return this.refusal === undefined ? d : { ...d, refusal: this.refusal };
  }

  private refill(now: number): void {
    if (this.tokensAt !== undefined) {
      const dt = Math.max(0, now - this.tokensAt) / 1000;
      this.tokens = Math.min(this.o.maxCreatePerSecond, this.tokens + dt * this.o.maxCreatePerSecond);
    }
    this.tokensAt = now;
  }
}
