/** One benchmark figure next to its floor: the raw operation underneath it, measured in the same run. */
export interface BenchRow {
  name: string;
  n: number;
  p50Ms: number;
  p99Ms: number;
  /** What the figure is compared against, e.g. "one Lease PUT" or "raw spawn of /bin/sh -c true". */
  floorName?: string;
  floorP50Ms?: number;
  floorP99Ms?: number;
  /** Anything else worth keeping (throughput, conflicts per acquisition, pool size...). */
  extra?: Record<string, number | string>;
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchRow[]>;
}
