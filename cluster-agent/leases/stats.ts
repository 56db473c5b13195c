/** Counters and a bounded latency sample for the PoolSnapshot totals. */
export class LeaseStats {
  acquisitions = 0;
  conflicts = 0;
  queueTimeouts = 0;
  private readonly samples: number[] = [];
  private next = 0;

  constructor(private readonly capacity = 2048) {}

  recordAcquire(latencyMs: number): void {
    this.acquisitions++;
    if (this.samples.length < this.capacity) this.samples.push(latencyMs);
    else this.samples[this.next] = latencyMs;
    this.next = (this.next + 1) % this.capacity;
  }

  percentile(p: number): number | null {
    return percentile(this.samples, p);
  }
}

/** Nearest-rank percentile (p in 0..100) of an unsorted sample; null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? null;
}
