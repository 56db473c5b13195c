import { spawn } from "node:child_process";
import type { ExecTarget, Executor } from "../cluster-agent/exec/executor.ts";
import { HttpExecutor } from "../cluster-agent/exec/http-executor.ts";
import { podExecToken } from "../cluster-agent/exec/pod-token.ts";
import { startSandboxServer } from "../devstack/fixtures/sandbox-server.ts";
import type { BenchSuite } from "./types.ts";

/** One line of the exec-overhead table: an executor's latency for `true` next to a raw spawn. */
export interface ExecBenchRow {
  name: string;
  n: number;
  p50Ms: number;
  p99Ms: number;
  floorName: string;
  floorP50Ms: number;
  floorP99Ms: number;
}

export interface ExecBenchTarget {
  name: string;
  executor: Executor;
  target: ExecTarget;
}

const FLOOR_NAME = "raw spawn /bin/sh -c true";

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round((sorted[idx] ?? Number.NaN) * 1000) / 1000;
}

/** The floor: spawning `/bin/sh -c true` on this machine and waiting for it to exit. */
export async function rawSpawnSamples(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn("/bin/sh", ["-c", "true"], { stdio: "ignore" });
      child.once("error", reject);
      child.once("exit", () => resolve());
    });
    out.push(performance.now() - t0);
  }
  return out;
}

/** `true` through an executor, end to end as the agent sees it (request to outcome). */
export async function executorSamples(t: ExecBenchTarget, n: number, deadlineMs: number): Promise<number[]> {
  const out: number[] = [];
  const until = Date.now() + deadlineMs;
  for (let i = 0; i < n && Date.now() < until; i++) {
    const t0 = performance.now();
    const r = await t.executor.exec(t.target, {
      command: "true",
      timeoutMs: 10_000,
      signal: AbortSignal.timeout(20_000),
    });
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`${t.name}: exec failed: ${r.error.code} ${r.error.message}`);
    if (r.value.exitCode !== 0) throw new Error(`${t.name}: \`true\` exited ${r.value.exitCode}`);
    out.push(ms);
  }
  return out;
}

/**
 * Measures each target and the raw-spawn floor (n samples each, bounded by `deadlineMs` per
 * target; a few warm-up runs are discarded so keep-alive connections and caches are warm).
 */
export async function benchExec(opts: {
  targets: ExecBenchTarget[];
  n?: number;
  warmup?: number;
  deadlineMs?: number;
}): Promise<ExecBenchRow[]> {
  const n = Math.max(1, Math.min(opts.n ?? 200, 5000));
  const warmup = opts.warmup ?? 5;
  const deadlineMs = opts.deadlineMs ?? 60_000;
  await rawSpawnSamples(warmup);
  const floor = await rawSpawnSamples(n);
  const floorP50Ms = percentile(floor, 50);
  const floorP99Ms = percentile(floor, 99);
  const rows: ExecBenchRow[] = [];
  for (const t of opts.targets) {
    await executorSamples(t, warmup, deadlineMs);
    const samples = await executorSamples(t, n, deadlineMs);
    rows.push({
      name: t.name,
      n: samples.length,
      p50Ms: percentile(samples, 50),
      p99Ms: percentile(samples, 99),
      floorName: FLOOR_NAME,
      floorP50Ms,
      floorP99Ms,
    });
  }
  return rows;
}

/**
 * Self-contained http-mode run: the bundled exec server in bubblewrap on this machine (as
 * devcluster runs it, without the API server in the path — http mode never touches it).
 * Pass `extraTargets` (e.g. an ApiExecutor against a devcluster pod) to measure api mode too.
 */
export async function benchExecStandalone(
  opts: { n?: number; deadlineMs?: number; extraTargets?: ExecBenchTarget[] } = {},
): Promise<ExecBenchRow[]> {
  const server = await startSandboxServer({ token: podExecToken("bench-token", "bench", "bench") });
  try {
    const http: ExecBenchTarget = {
      name: "http executor (exec server in bwrap)",
      executor: new HttpExecutor({ poolToken: "bench-token", port: server.port }),
      target: { namespace: "bench", pod: "bench", podIP: server.host, fence: 1 },
    };
    return await benchExec({
      targets: [http, ...(opts.extraTargets ?? [])],
      n: opts.n,
      deadlineMs: opts.deadlineMs,
    });
  } finally {
    await server.close();
  }
}

/**
 * Both modes against one devcluster sandbox pod: http goes agent → exec server in the pod;
 * api goes agent → API server → kubelet → nsenter into the pod (through the remote wrapper).
 */
export async function benchExecDevcluster(
  opts: { n?: number; deadlineMs?: number } = {},
): Promise<ExecBenchRow[]> {
  const { startSandboxPodCluster } = await import("../devstack/fixtures/sandbox-pod.ts");
  const { ApiExecutor } = await import("../cluster-agent/exec/api-executor.ts");
  const cluster = await startSandboxPodCluster("bench-exec");
  try {
    const { pod, podIP } = await cluster.createPod("bench-exec");
    const target = { namespace: cluster.namespace, pod, podIP, fence: 1 };
    return await benchExec({
      n: opts.n,
      deadlineMs: opts.deadlineMs,
      targets: [
        {
          name: "exec `true` (http mode)",
          executor: new HttpExecutor({ poolToken: cluster.poolToken }),
          target,
        },
        {
          name: "exec `true` (api mode, pods/exec)",
          executor: new ApiExecutor({ kubeConfig: cluster.kubeConfig }),
          target,
        },
      ],
    });
  } finally {
    await cluster.close();
  }
}

export const suite: BenchSuite = {
  name: "exec",
  async run() {
    const n = Number(process.env.BENCH_EXEC_N ?? 200);
    return await benchExecDevcluster({ n, deadlineMs: 60_000 });
  },
};

if (process.argv[1]?.endsWith("bench/exec.ts")) {
  suite.run().then((rows) => console.table(rows));
}
