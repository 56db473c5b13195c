/**
 * Acquisitions per second as an exponentially decaying average: each arrival adds 1/τ, and the
 * sum decays with time constant τ. A burst lifts it at once; after the burst (or after an outage
 * in which nothing was served) it falls to ~5% within 3τ, so it cannot keep the pool inflated.
 */
export class ArrivalRate {
  private value = 0;
  private at: number | undefined;

  constructor(
    private readonly tauMs = 5_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  record(n = 1): void {
    this.value = this.decayed(this.now()) + n / (this.tauMs / 1000);
    this.at = this.now();
  }

  /** Per second, as of now. */
  perSecond(): number {
    return this.decayed(this.now());
  }

  private decayed(t: number): number {
    if (this.at === undefined) return 0;
    return this.value * Math.exp(-Math.max(0, t - this.at) / this.tauMs);
  }
}
