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
  /**
   * "bound" (default): the floor is a lower bound of this figure, so "x floor" is meaningful.
   * "cost": the floor is a cost the figure pays in part or in the background (a recycle, the
   * command itself); shown, but not divided.
   */
  floorKind?: "bound" | "cost";
  /** A published figure of another system (bench/anchors.ts); different machines, so only a rough guide. */
  compare?: string;
  /** Anything else worth keeping (throughput, conflicts per acquisition, pool size...). */
  extra?: Record<string, number | string>;
}

/** `npm run bench -- [--runs N] suite…`: what the command line asks of every suite. */
export interface SuiteOptions {
  /** Repetitions of a suite's main measurement (suites that support it; default 1). */
  runs: number;
}

export interface BenchSuite {
  name: string;
  run(opts?: SuiteOptions): Promise<BenchRow[]>;
}

/** Where and under what load the numbers were taken. */
export interface MachineInfo {
  node: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  memGiB: number;
  at: string;
  /** os.loadavg() when the run started and ended (1, 5, 15 minutes). */
  loadAtStart: number[];
  loadAtEnd: number[];
}

export interface BenchReport {
  machine: MachineInfo;
  results: BenchRow[];
  /** Suites that failed, with the reason (their rows are missing). */
  failures?: string[];
}
