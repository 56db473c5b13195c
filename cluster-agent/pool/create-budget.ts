/**
 * The pool leader's create budget: how many pod creates it may have in flight, published on the
 * leader Lease with its renewals so that a successor knows how many of its predecessor's creates
 * may still land (issue 30: a change of leader mid-burst crossed POOL_MAX_PODS by those).
 *
 * The rule the leader keeps: its creates that may still land (in flight, or unanswered and still
 * within the time the controller waits for them) plus the ones it inherited never exceed the
 * budget on the record, whichever of its writes the record holds. So it lowers its own limit when
 * it *sends* a write with a lower budget (a write whose answer is lost may have landed) and raises
 * it only once a write with a higher one has landed (it asks for an early renewal when short: one
 * write when a shortfall begins and one per doubling, so a burst grows in a few steps). A settled
 * pool publishes only what is in flight: a successor of a leader that was creating nothing
 * reserves nothing. It starts creates only until its renew
 * deadline; each lands within three call timeouts of being sent (the call, then the twice the
 * controller already waits for an unanswered one). The record says how long after it was written
 * that bound lies; a successor reserves the budget against the cap until that long after it first
 * saw the record (never before it was written: no clock comparison between machines), or until as
 * many pods it did not create have appeared.
 *
 * Pure state on an injected clock: the elector calls takeover/next/landed around its writes, the
 * controller asks room/reserved and reports the pods it sees and the names it sends.
 */

export const CREATE_BUDGET_ANNOTATION = "pi-sandbox-runtime/create-budget";

/** Inherited windows longer than this come from a hand edit, not from an agent. */
const MAX_WINDOW_MS = 10 * 60_000;

/** What the controller tells the budget about itself. */
export interface CreateLoad {
  /** Our creates that may still land: in flight, or unanswered and still awaited. */
  inFlight: number;
  /** Creates it wants room to start: the policy's start limit while the pool is short of pods, else 0. */
  want: number;
  /** New creates POOL_MAX_PODS leaves room for now (what it counts, our in-flight ones included). */
  capRoom: number;
}

/** The controller the budget serves. */
export interface BudgetedController {
  /** The create call's timeout (the controller's request timeout). */
  callTimeoutMs: number;
  /** Most creates it ever wants in flight (the scale policy's top start limit). */
  maxInFlight: number;
  /** POOL_MAX_PODS: a predecessor kept its creates within it too, which bounds what it left in flight. */
  maxPods: number;
  load(): CreateLoad;
  /** The budget grew: reconcile again. */
  onRaised(): void;
}

interface Record_ {
  inFlight: number;
  landsWithinMs: number;
}

interface Reservation {
  count: number;
  until: number;
  /** Pod names present when we first looked after taking over (undefined: not looked yet). */
  known: Set<string> | undefined;
  /** New pods we did not create: the predecessor's creates that landed. */
  foreign: Set<string>;
  /** Names of our own creates, sent while the reservation lasts. */
  ours: Set<string>;
}

export class CreateBudget {
  /** Creates (ours + inherited) we may have in flight: never above what the record may say. */
  private allowed = 0;
  /** Until when we may start creates: the renew deadline of the last write that landed. */
  private actsUntil = Number.NEGATIVE_INFINITY;
  private reservation: Reservation | undefined;
  private c: BudgetedController = {
    callTimeoutMs: 0,
    maxInFlight: 0,
    maxPods: Number.MAX_SAFE_INTEGER,
    load: () => ({ inFlight: 0, want: 0, capRoom: Number.MAX_SAFE_INTEGER }),
    onRaised: () => {},
  };

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** The controller whose creates this budget bounds (it binds itself when constructed). */
  bind(c: BudgetedController): void {
    this.c = c;
  }

  /** The annotation the budget lives in. */
  get key(): string {
    return CREATE_BUDGET_ANNOTATION;
  }

  /**
   * We are taking over a leader record holding `value` (undefined: none, e.g. an older agent),
   * first seen by us, unchanged, at `observedAt`. `actsForMs`: the record's renew deadline, for a
   * record without a budget (its holder may have had up to our own maximum in flight).
   */
  takeover(value: string | undefined, observedAt: number, actsForMs: number): void {
    const r = parseRecord(value) ?? {
      inFlight: this.c.maxInFlight,
      landsWithinMs: actsForMs + this.landingMs(),
    };
    this.reservation = {
      count: r.inFlight,
      until: observedAt + r.landsWithinMs,
      known: undefined,
      foreign: new Set(),
      ours: new Set(),
    };
  }

  /**
   * The value for a write about to be sent, after which we may start creates for `actsForMs` (the
   * renew deadline; 0 when giving the lease up). Lowers our limit at once if it is lower.
   */
  next(actsForMs: number): string {
    const now = this.now();
    const { inFlight, want, capRoom } = this.c.load();
    const reserved = this.reserved();
    // Headroom over the start limit, so its additive growth seldom waits for a renewal; none when
    // giving the lease up (no create starts after it); never more than the cap leaves room for (a
    // successor would reserve it all, blocking growth for nothing).
    const headroom = Math.min(this.c.maxInFlight, 2 * want, inFlight + capRoom);
    const own = actsForMs > 0 ? Math.max(inFlight, headroom) : inFlight;
    const budget = reserved + own;
    this.allowed = Math.min(this.allowed, budget);
    this.actsUntil = Math.min(this.actsUntil, now + actsForMs);
    const inherited = this.reservation ? this.reservation.until - now : 0;
    const landsWithinMs = Math.ceil(Math.max(actsForMs + this.landingMs(), inherited));
    return JSON.stringify({ inFlight: budget, landsWithinMs } satisfies Record_);
  }

  /** The write carrying `value` landed: we may have that many in flight until `actsUntil`. */
  landed(value: string, actsUntil: number): void {
    const r = parseRecord(value);
    if (!r) return;
    const raised = r.inFlight > this.allowed || actsUntil > this.actsUntil;
    this.allowed = r.inFlight;
    this.actsUntil = actsUntil;
    if (raised) this.c.onRaised();
  }

  /** False once past the renew deadline of our last landed write: no create may start then. */
  mayStart(): boolean {
    return this.now() < this.actsUntil;
  }

  /** Creates we may start now, given our own that may still land. */
  room(inFlight: number): number {
    if (!this.mayStart()) return 0;
    return Math.max(0, this.allowed - inFlight - this.reserved());
  }

  /** The predecessors' creates that may still land: they count against the cap. */
  reserved(): number {
    const r = this.reservation;
    if (!r) return 0;
    if (this.now() >= r.until) {
      this.reservation = undefined;
      return 0;
    }
    // The predecessor kept what it had in flight within POOL_MAX_PODS beside the pods it counted,
    // and the pods we first saw are among those or its landed creates: so no more than the cap
    // leaves beside them can still land (a record without a budget would otherwise reserve our
    // whole maximum, above the cap).
    const bound = r.known ? Math.min(r.count, Math.max(0, this.c.maxPods - r.known.size)) : r.count;
    return Math.max(0, bound - r.foreign.size);
  }

  /** A create of ours is about to be sent under `name` (a pod of that name is not the predecessor's). */
  sent(name: string): void {
    this.reservation?.ours.add(name);
  }

  /** The pods the cache holds now: each new one we did not create is one predecessor create landed. */
  sawPods(names: Iterable<string>): void {
    const r = this.reservation;
    if (!r) return;
    if (!r.known) {
      r.known = new Set(names);
      return;
    }
    for (const n of names) if (!r.known.has(n) && !r.ours.has(n)) r.foreign.add(n);
  }

  /** Three call timeouts: a create sent now lands by then (the call, then twice its budget). */
  private landingMs(): number {
    return 3 * this.c.callTimeoutMs;
  }
}

function parseRecord(text: string | undefined): Record_ | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Partial<Record_>;
    const inFlight = Number(v.inFlight);
    const landsWithinMs = Number(v.landsWithinMs);
    if (!Number.isInteger(inFlight) || inFlight < 0 || !Number.isFinite(landsWithinMs) || landsWithinMs < 0)
      return undefined;
    return { inFlight, landsWithinMs: Math.min(landsWithinMs, MAX_WINDOW_MS) };
  } catch {
    return undefined;
  }
}
