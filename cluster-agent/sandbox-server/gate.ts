/**
 * Runs at most `limit` tasks at once; the others wait in arrival order. A directory listing holds
 * its whole directory's entries while it builds a page: unbounded, 40 concurrent first pages of a
 * 10,000-entry directory of ~3.8 KB names grew the exec server's peak RSS by ~370 MB (most likely
 * what failed a 512 MiB test pod whose workspace held 250 MiB); 4 at a time, ~250 MB — the rest
 * is the 40 answers of 1 MiB each and garbage not yet collected.
 */
export class Gate {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new Error(`gate limit must be a positive integer, got ${limit}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so a newcomer cannot overtake it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Tasks running and waiting (what the unit specs check). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }
}
