/** Nearest-rank percentiles and summaries of latency samples (milliseconds). Pure. */

/** The nearest-rank percentile (q in [0, 100]); undefined for no samples. */
export function percentile(samples: readonly number[], q: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((Math.min(100, Math.max(0, q)) / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Rounded to microseconds, so the JSON stays readable. */
export const roundMs = (ms: number): number => Math.round(ms * 1000) / 1000;

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0)
    return { n: 0, p50: Number.NaN, p99: Number.NaN, mean: Number.NaN, min: Number.NaN, max: Number.NaN };
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const s of samples) {
    sum += s;
    if (s < min) min = s;
    if (s > max) max = s;
  }
  return {
    n: samples.length,
    p50: roundMs(percentile(samples, 50) as number),
    p99: roundMs(percentile(samples, 99) as number),
    mean: roundMs(sum / samples.length),
    min: roundMs(min),
    max: roundMs(max),
  };
}
