/**
 * The elastic pool through the edge of a local stack with `npm start`'s defaults (POOL_SIZE 8,
 * POOL_MAX_PODS 64, 2 agent replicas, http exec, QUEUE_TIMEOUT_SECONDS 15):
 *
 * - burst/1-tenant: 120 concurrent `sleep 0.3` from one tenant: served, queue_timeouts, latency
 *   p50/p99, pods started, peak live and peak Terminating pods, the first new pod's Ready time,
 *   devcluster's API latency and event-loop delay during the burst, the agents' control-plane
 *   failures, and how busy the machine's CPU was. Floor: what pod start-up allows — a start-up is
 *   CPU-bound on devcluster, so serving everyone takes at least (pods started during the burst) ×
 *   (CPU per start-up, measured at the start of the same run) / cores.
 * - burst/6-tenants: the same split over 6 tenants: per-tenant median wait, max/min.
 * - scale-down: time from the end of the burst until the pool is back to POOL_SIZE pods (all free).
 *   Floor: POOL_SCALE_DOWN_AFTER_SECONDS.
 * - throughput/<mode>-elastic vs throughput/replace-fixed: a closed loop of 32 clients sending
 *   `true`, at the default POOL_MAX_PODS and with POOL_MAX_PODS = POOL_SIZE (the old fixed pool).
 *
 * `--runs N` repeats the two bursts N times on the same stack (back to POOL_SIZE in between; rows
 * of runs after the first end in `/run2`, `/run3`…).
 *
 * BENCH_ELASTIC_RECYCLE=replace|reuse-same-tenant runs only the first stack (bursts, scale-down,
 * elastic throughput), with that recycle mode (rows suffixed `/reuse-same-tenant` for reuse): the
 * pair compares same-tenant reuse with replace under the same load, in half the time.
 */

import { cpus } from "node:os";
import type { Stack } from "../devstack/stack.ts";
import { SCOPES } from "../shared/api.ts";
import { burstGoals } from "./burst-goals.ts";
import { type BurstObservation, observeBurst } from "./burst-observer.ts";
import { closedLoop } from "./calls.ts";
import { cpuByProcess, machineCpuMs, processTreeCpuMs } from "./machine-cpu.ts";
import { measurePodStarts } from "./pod-start.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite, SuiteOptions } from "./types.ts";
import { backToPoolSize, progress, waitForFullPool, withStack } from "./with-stack.ts";

const POOL = 8;
/** Commands per burst; BENCH_ELASTIC_BURST makes a short check of the suite itself (default 120). */
const BURST = Number(process.env.BENCH_ELASTIC_BURST ?? 120);
/** Pods started one at a time before the stacks, for the CPU one start-up costs in this run. */
const FLOOR_PODS = 10;
const CORES = cpus().length;

function burstRecycle(): "replace" | "reuse-same-tenant" {
  const v = process.env.BENCH_ELASTIC_RECYCLE ?? "replace";
  if (v === "replace" || v === "reuse-same-tenant") return v;
  throw new Error(`BENCH_ELASTIC_RECYCLE must be replace or reuse-same-tenant, not ${v}`);
}

interface Outcome {
  status: number;
  code: string | null;
  ms: number;
  queueMs: number | null;
  tenant: string;
}

async function rawExec(stack: Stack, token: string, tenant: string, command: string): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${stack.edgeUrl}/v1/exec`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ command }),
      signal: AbortSignal.timeout(60_000),
    });
    const body = (await res.json().catch(() => ({}))) as { queueMs?: number; error?: { code?: string } };
    return {
      status: res.status,
      code: body.error?.code ?? null,
      ms: performance.now() - t0,
      queueMs: typeof body.queueMs === "number" ? body.queueMs : null,
      tenant,
    };
  } catch (e) {
    return { status: 0, code: (e as Error).name, ms: performance.now() - t0, queueMs: null, tenant };
  }
}

/** Sequential commands of the command-cost phase: enough to average out one slow call. */
const PATH_RUNS = 16;

/**
 * The machine CPU one command costs besides its pod start-up, measured on this stack before the
 * bursts: PATH_RUNS sequential `sleep 0.3` (each served at once by a free pod, so no waiting and
 * no dispatch contention), then until the pool is whole again; minus the stack's idle CPU over the
 * same time and one pod start-up per command. What is left is the command's own path — edge
 * (auth, quota, tunnel), agent (relay check, Lease CAS, release, the replacement's Lease and
 * watch events), exec server, devcluster's Lease writes — which every served command of a burst
 * costs too, and which the start-up-only floor leaves out.
 */
async function commandPathCpuMs(
  stack: Stack,
  podCpuMs: number,
): Promise<{ pathMs: number; idleMsPerSec: number }> {
  const token = await stack.issuer.mint({ tenant: "path", subject: "bench", scopes: [SCOPES.exec] });
  await waitForFullPool(stack, POOL, 120_000);
  await backToPoolSize(stack, POOL, Date.now(), 120_000);
  // The stack's own processes only (another engineer's work on a shared machine is not in it).
  const idle0 = processTreeCpuMs();
  const idleT0 = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  const idleMsPerSec = ((processTreeCpuMs() - idle0) / (performance.now() - idleT0)) * 1000;
  const cpu0 = processTreeCpuMs();
  const t0 = performance.now();
  for (let i = 0; i < PATH_RUNS; i++) {
    const out = await rawExec(stack, token, "path", "sleep 0.3");
    if (out.status !== 200) throw new Error(`command-cost phase: ${out.status} ${out.code ?? "?"}`);
  }
  await backToPoolSize(stack, POOL, Date.now(), 120_000);
  const cpu = processTreeCpuMs() - cpu0 - (idleMsPerSec * (performance.now() - t0)) / 1000;
  return { pathMs: Math.max(0, cpu / PATH_RUNS - podCpuMs), idleMsPerSec };
}

/**
 * The stack's CPU during a burst by what spent it. A pod's processes move from live (`other/…`)
 * to the kubelet's reaped time when they exit, so they are summed into one group: the pods.
 */
function stackCpuGroups(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const group = (label: string) =>
    label === "reaped-by-kubelet" || label.startsWith("other/") ? "pods" : label;
  const out = new Map<string, number>();
  for (const label of new Set([...before.keys(), ...after.keys()])) {
    const g = group(label);
    out.set(g, (out.get(g) ?? 0) + (after.get(label) ?? 0) - (before.get(label) ?? 0));
  }
  return out;
}

interface BurstResult {
  outs: Outcome[];
  seen: BurstObservation;
  wallMs: number;
  cpuMs: number;
  stackCpuMs: number;
  byProcess: Map<string, number>;
}

async function burst(stack: Stack, tenants: number): Promise<BurstResult> {
  const tokens = await Promise.all(
    Array.from({ length: tenants }, (_, i) =>
      stack.issuer.mint({ tenant: `burst-${i}`, subject: "bench", scopes: [SCOPES.exec] }),
    ),
  );
  const observer = await observeBurst(stack);
  const agentPids = new Set(stack.agents.map((a) => a.child.pid ?? -1));
  const kubeletPid = stack.cluster.kubelet.pid;
  const byProcess0 = cpuByProcess(agentPids, kubeletPid);
  const cpu0 = machineCpuMs();
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      rawExec(stack, tokens[i % tenants] as string, `burst-${i % tenants}`, "sleep 0.3"),
    ),
  );
  const wallMs = performance.now() - t0;
  const cpuMs = machineCpuMs() - cpu0;
  const byProcess = stackCpuGroups(byProcess0, cpuByProcess(agentPids, kubeletPid));
  // Every process of the stack is in one group, so their sum is the stack's whole CPU.
  const stackCpuMs = [...byProcess.values()].reduce((sum, ms) => sum + ms, 0);
  return { outs, seen: await observer.stop(), wallMs, cpuMs, stackCpuMs, byProcess };
}

async function throughput(
  stack: Stack,
  name: string,
  extra: Record<string, string | number>,
): Promise<BenchRow> {
  const token = await stack.issuer.mint({ tenant: "tp", subject: "bench", scopes: [SCOPES.exec] });
  const load = await closedLoop({
    concurrency: 32,
    perClient: 10,
    deadlineMs: 60_000,
    call: async () => {
      const out = await rawExec(stack, token, "tp", "true");
      if (out.status !== 200) throw new Error(`${out.status} ${out.code ?? "?"}`);
      return out;
    },
  });
  // Which failures, not just how many, e.g. "503_queue_timeoutx4,0_TimeoutErrorx2".
  const byKind = new Map<string, number>();
  for (const e of load.errors) byKind.set(e, (byKind.get(e) ?? 0) + 1);
  const errorKinds = [...byKind].map(([k, n]) => `${k.replace(" ", "_")}x${n}`).join(",") || "none";
  const s = summarize(load.samples.map((x) => x.ms));
  const reqPerSec = (load.samples.length / load.wallMs) * 1000;
  progress(`elastic: ${name} ${reqPerSec.toFixed(1)} req/s (${load.errors.length} errors)`);
  return {
    name,
    n: s.n,
    p50Ms: s.p50,
    p99Ms: s.p99,
    floorName: "one pod start-up per request (replace) / one scrub (scrub), spread over the pods",
    floorKind: "cost",
    extra: {
      reqPerSec: Number(reqPerSec.toFixed(2)),
      errors: load.errors.length,
      errorKinds,
      clients: 32,
      ...extra,
    },
  };
}

function burstRow(
  tenants: number,
  name: string,
  b: BurstResult,
  podCpuMs: number,
  pathCpuMs: number,
  /** One start-up's CPU over the whole machine (same run). */
  podMachineCpuMs: number,
): BenchRow {
  const served = b.outs.filter((o) => o.status === 200);
  const timeouts = b.outs.filter((o) => o.code === "queue_timeout").length;
  const lat = summarize(served.map((o) => o.ms));
  const s = b.seen;
  // The CPU the start-ups alone need, spread over every core: no pool can serve all of the burst
  // sooner, so it is a bound on the p99 of serving everyone (and a p50 of half of it).
  const floorMs = (s.podsStarted * podCpuMs) / CORES;
  // The same with a start-up's machine-wide CPU: it also holds the kernel's own work for the pod,
  // but also anything else the machine ran, so it is the floor only on a quiet machine.
  const machineFloorMs = (s.podsStarted * podMachineCpuMs) / CORES;
  // Not a bound: the CPU the burst's pods would cost one at a time in this stack (start-up plus a
  // pod's life and its command's path, measured this run), over the cores. A burst can do better
  // (watch events and polls are shared by many pods), so p99 below it is possible; commands served
  // on a reused pod (reuse-same-tenant) add their scrub and path, not counted.
  const workEstimateMs = (s.podsStarted * (podCpuMs + pathCpuMs)) / CORES;
  const failures = Object.entries(s.agentFailures).map(([k, n]) => `${k.replace(/ /g, "_")}x${n}`);
  progress(
    `elastic: ${name}: ${served.length} served, ${timeouts} queue_timeout, p99 ${Math.round(lat.p99)} ms (floor ${Math.round(floorMs)}, by the machine's CPU ${Math.round(machineFloorMs)}, its pods' work one at a time ${Math.round(workEstimateMs)}, the stack's burst CPU ÷ cores ${Math.round(b.stackCpuMs / CORES)}), ${s.podsStarted} pods started, first new Ready ${Math.round(s.firstNewReadyMs)} ms, peak ${s.peakLive} live + ${s.peakTerminating} terminating, API p99 ${Math.round(s.api.p99Ms)} ms, loop delay p99 ${Math.round(s.loopDelayP99Ms)} ms, agent failures ${failures.join(",") || "none"}`,
  );
  const extra: Record<string, string | number> = {
    served: served.length,
    queueTimeouts: timeouts,
    otherErrors: BURST - served.length - timeouts,
    podsStarted: s.podsStarted,
    firstNewPodReadyMs: Math.round(s.firstNewReadyMs),
    peakLivePods: s.peakLive,
    peakTerminatingPods: s.peakTerminating,
    apiGetP50Ms: Math.round(s.api.p50Ms),
    apiGetP99Ms: Math.round(s.api.p99Ms),
    apiGetMaxMs: Math.round(s.api.maxMs),
    apiGetFailed: s.api.failed,
    devclusterLoopDelayP99Ms: Math.round(s.loopDelayP99Ms),
    devclusterLoopDelayMaxMs: Math.round(s.loopDelayMaxMs),
    agentControlPlaneFailures: failures.join(",") || "none",
    podStartCpuMs: Math.round(podCpuMs),
    podStartMachineCpuMs: Math.round(podMachineCpuMs),
    machineFloorMs: Math.round(machineFloorMs),
    p99OverMachineFloor: Number((lat.p99 / Math.max(1, machineFloorMs)).toFixed(2)),
    p99OverFloor: Number((lat.p99 / Math.max(1, floorMs)).toFixed(2)),
    commandPathCpuMs: Math.round(pathCpuMs),
    workEstimateMs: Math.round(workEstimateMs),
    p99OverWorkEstimate: Number((lat.p99 / Math.max(1, workEstimateMs)).toFixed(2)),
    // The stack's CPU during the burst over the cores: p99 near it means nothing waited on anything
    // but CPU (the pool never idled while callers queued), whatever that CPU was spent on.
    stackCpuOverCoresMs: Math.round(b.stackCpuMs / CORES),
    p99OverStackCpu: Number((lat.p99 / Math.max(1, b.stackCpuMs / CORES)).toFixed(2)),
    wallMs: Math.round(b.wallMs),
    // ~100 % means the burst was bound by this machine's CPU, not by the pool.
    cpuBusyPct: Math.round((b.cpuMs / (b.wallMs * CORES)) * 100),
    // Where a started pod's share of the burst went (ms): the pods' own processes (runc, the exec
    // server, the command), the kubelet, devcluster's API server with the bench's own client and
    // observer, the agents, workerd. Against podStartCpuMs/podStartMachineCpuMs, what a command
    // costs beyond its pod's start-up.
    cpuPerPodByProcess: [...b.byProcess]
      .filter(([, ms]) => ms / Math.max(1, s.podsStarted) >= 0.5)
      .sort((x, y) => y[1] - x[1])
      .map(([k, ms]) => `${k}:${Math.round(ms / Math.max(1, s.podsStarted))}`)
      .join(","),
    cpuMsPerPodStarted: Math.round(b.stackCpuMs / Math.max(1, s.podsStarted)),
  };
  progress(
    `elastic: ${name}: the stack's CPU per pod started ${extra.cpuMsPerPodStarted} ms (${extra.cpuPerPodByProcess}); one bare start-up ${Math.round(podCpuMs)} ms (machine ${Math.round(podMachineCpuMs)})`,
  );
  if (tenants > 1) {
    const medians = Array.from({ length: tenants }, (_, i) => {
      const waits = served.filter((o) => o.tenant === `burst-${i}`).map((o) => o.queueMs ?? 0);
      return summarize(waits).p50;
    });
    extra.perTenantMedianWaitMs = medians.map((m) => Math.round(m)).join("/");
    extra.fairnessMaxMin = Number((Math.max(...medians) / Math.max(1, Math.min(...medians))).toFixed(2));
  }
  return {
    name,
    n: served.length,
    p50Ms: lat.p50,
    p99Ms: lat.p99,
    floorName: `CPU of the ${s.podsStarted} pod start-ups of the burst (${Math.round(podCpuMs)} ms each, measured this run) over ${CORES} cores`,
    floorP50Ms: floorMs / 2,
    floorP99Ms: floorMs,
    extra,
  };
}

export async function runElasticBench(opts: SuiteOptions = { runs: 1 }): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const recycle = burstRecycle();
  const suffix = recycle === "replace" ? "" : `/${recycle}`;
  // What one start-up costs in this run: devcluster's process and what it reaped (runc, the
  // container, the forwarder), so another tenant of a shared machine does not inflate it.
  // Measured again after the stack: one measure of 10 start-ups moved by ±12 % between series on
  // this machine, and the floor takes the mean of the two.
  const starts = await measurePodStarts("bench-elastic-pod-start", FLOOR_PODS);
  const podCpuMs = starts.treeMsPerPod;
  progress(
    `elastic: one pod start-up costs ${Math.round(podCpuMs)} ms of CPU (machine: ${Math.round(starts.machineMsPerPod)})`,
  );
  // Burst rows wait for the floor, which is final once start-ups are measured again after the stack.
  const entries: Array<BenchRow | { tenants: number; name: string; b: BurstResult }> = [];
  let pathMs = 0;
  const agentEnv = process.env.BENCH_AGENT_NODE_OPTIONS
    ? { agentEnv: { NODE_OPTIONS: process.env.BENCH_AGENT_NODE_OPTIONS } }
    : {};
  await withStack(
    { recycle, execMode: "http", poolSize: POOL, agentsPerRegion: 2, ...agentEnv },
    async (stack) => {
      await waitForFullPool(stack, POOL, 120_000);
      const path = await commandPathCpuMs(stack, podCpuMs);
      pathMs = path.pathMs;
      progress(
        `elastic: one command's own path costs ${Math.round(path.pathMs)} ms of CPU besides its start-up (idle stack ${Math.round(path.idleMsPerSec)} ms/s)`,
      );
      for (let run = 1; run <= opts.runs; run++) {
        const runSuffix = run === 1 ? "" : `/run${run}`;
        for (const tenants of [1, 6]) {
          const b = await burst(stack, tenants);
          const burstEnd = Date.now();
          const name = `burst/${tenants === 1 ? "1-tenant" : "6-tenants"}${suffix}${runSuffix}`;
          entries.push({ tenants, name, b });
          progress(
            `elastic: ${name}: ${b.outs.filter((o) => o.status === 200).length} served in ${Math.round(b.wallMs)} ms, the stack's CPU ÷ cores ${Math.round(b.stackCpuMs / CORES)} ms`,
          );
          const backMs = await backToPoolSize(stack, POOL, burstEnd, 180_000);
          progress(`elastic: back to POOL_SIZE in ${backMs} ms`);
          if (tenants === 1)
            entries.push({
              name: `scale-down/back-to-pool-size${suffix}${runSuffix}`,
              n: 1,
              p50Ms: backMs,
              p99Ms: backMs,
              floorName: "POOL_SCALE_DOWN_AFTER_SECONDS (60 s)",
              floorP50Ms: 60_000,
              floorP99Ms: 60_000,
              extra: { poolSize: POOL },
            });
        }
      }
      entries.push(await throughput(stack, `throughput/${recycle}-elastic`, { recycle, poolMaxPods: 64 }));
    },
  );
  const after = await measurePodStarts("bench-elastic-pod-start-after", FLOOR_PODS);
  const treeMs = (starts.treeMsPerPod + after.treeMsPerPod) / 2;
  const machineMs = (starts.machineMsPerPod + after.machineMsPerPod) / 2;
  progress(
    `elastic: one pod start-up after the stack ${Math.round(after.treeMsPerPod)} ms of CPU (machine: ${Math.round(after.machineMsPerPod)}); the floor takes the mean, ${Math.round(treeMs)} (machine ${Math.round(machineMs)})`,
  );
  for (const e of entries) {
    if (!("b" in e)) {
      rows.push(e);
      continue;
    }
    const row = burstRow(e.tenants, e.name, e.b, treeMs, pathMs, machineMs);
    if (row.extra) {
      row.extra.podStartMachineCpuMsBefore = Math.round(starts.machineMsPerPod);
      row.extra.podStartMachineCpuMsAfter = Math.round(after.machineMsPerPod);
    }
    rows.push(row);
  }
  for (const g of burstGoals(rows))
    progress(`elastic: goal ${g.met ? "met" : "NOT met"}: ${g.row}: ${g.goal}: ${g.value}`);
  if (process.env.BENCH_ELASTIC_RECYCLE) return rows;
  await withStack(
    {
      recycle: "replace",
      execMode: "http",
      poolSize: POOL,
      agentsPerRegion: 2,
      agentEnv: { POOL_MAX_PODS: String(POOL) },
    },
    async (stack) => {
      await waitForFullPool(stack, POOL, 120_000);
      rows.push(
        await throughput(stack, "throughput/replace-fixed", { recycle: "replace", poolMaxPods: POOL }),
      );
    },
  );
  await withStack(
    { recycle: "scrub", execMode: "http", poolSize: POOL, agentsPerRegion: 2 },
    async (stack) => {
      await waitForFullPool(stack, POOL, 120_000);
      rows.push(await throughput(stack, "throughput/scrub-elastic", { recycle: "scrub", poolMaxPods: 64 }));
    },
  );
  return rows;
}

export const suite: BenchSuite = { name: "elastic", run: (opts) => runElasticBench(opts) };
