/**
 * Time as the lease core sees it: a monotonic `now` for every rule (queue deadlines, hand-off
 * grace, renewal periods, observed expiry) and the timers that fire them. Injected so the rules
 * have fast unit specifications with a fake clock; production uses the real one.
 */
export interface Clock {
  /** Monotonic milliseconds (performance.now in production). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout | undefined),
};
