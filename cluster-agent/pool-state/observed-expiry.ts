/**
 * Expiry as client-go's leader election judges it: a record is expired when *we* have not seen it
 * change for its lease duration, measured on our own monotonic clock. Another machine's renewTime
 * is never compared with our clock, so clock skew cannot expire a live holder early.
 */
export class ObservedExpiry {
  private readonly seen = new Map<string, { key: string; at: number }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Record the current record of `name`; returns the local time its last change was observed. */
  observe(name: string, key: string): number {
    const prev = this.seen.get(name);
    if (prev && prev.key === key) return prev.at;
    const at = this.now();
    this.seen.set(name, { key, at });
    return at;
  }

  /** True when the record `key` has been unchanged (as we saw it) for at least durationMs. */
  isExpired(name: string, key: string, durationMs: number): boolean {
    const at = this.observe(name, key);
    return this.now() - at >= durationMs;
  }

  /** Milliseconds until expiry (≤ 0 when expired). */
  remainingMs(name: string, key: string, durationMs: number): number {
    return this.observe(name, key) + durationMs - this.now();
  }

  forget(name: string): void {
    this.seen.delete(name);
  }

  names(): string[] {
    return [...this.seen.keys()];
  }
}
