/**
 * Throughput and queue wait over a pool of 8, once per recycle mode (a fresh local stack each:
 * http exec mode, 2 agent replicas).
 *
 * - throughput/<mode>: a bounded closed loop through the edge (8 clients, each sending `true`
 *   one request after the other). The floor is the recycle every request pays before its pod is
 *   free again: replace = pod delete + create + Ready (timed by watching the pods from outside),
 *   scrub = /reset + /inspect (the agent's scrubber, timed on an idle pod after the load).
 * - e2e_exec/replace-paced (replace only): `true` through the edge one at a time at 4 req/s, the
 *   default mode's warm handout when the pool keeps up.
 * - queue_wait/<mode>: rounds of 16 concurrent `sleep 0.2` over the 8 pods; queueMs as the results
 *   report it. The floor is the command itself (durationMs): the least the second half can wait.
 */
import { HttpScrubber } from "../cluster-agent/exec/scrubber.ts";
import { SCOPES } from "../shared/api.ts";
import { closedLoop, edgeExec, type Timed } from "./calls.ts";
import { watchPods } from "./pod-watch.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { podExecSamples, progress, readyPods, waitForFullPool, withStack } from "./with-stack.ts";

const REGION = "local";
const POOL = 8;
/** 4 req/s: below what 8 pods refilled in ~1.1 s each can serve (~7 req/s). */
const PACE_MS = 250;

export interface LoadOptions {
  modes?: Array<"replace" | "scrub">;
  concurrency?: number;
  /** Requests per client, per mode (replace is bound by pod start-up, so it gets fewer). */
  perClient?: { replace: number; scrub: number };
  queueRounds?: number;
  /** Paced sequential requests in replace mode (one per PACE_MS). */
  pacedN?: number;
  deadlineMs?: number;
}

export async function runLoadBench(opts: LoadOptions = {}): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const mode of opts.modes ?? ["replace", "scrub"]) {
    rows.push(...(await runMode(mode, opts)));
  }
  return rows;
}

async function runMode(mode: "replace" | "scrub", opts: LoadOptions): Promise<BenchRow[]> {
  const concurrency = opts.concurrency ?? 8;
  const perClient = (opts.perClient ?? { replace: 8, scrub: 25 })[mode];
  const rounds = opts.queueRounds ?? 2;
  const deadlineMs = opts.deadlineMs ?? 90_000;
  const pacedN = opts.pacedN ?? 40;
  return withStack({ recycle: mode, execMode: "http", poolSize: POOL, agentsPerRegion: 2 }, async (stack) => {
    progress(`load/${mode}: stack up`);
    const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
    const namespace = stack.namespaceOf(REGION);
    const exec = (command: string) => edgeExec(stack.edgeUrl, token, command);

    // Warm the edge, the tunnel and the keep-alive connections.
    for (let i = 0; i < 4; i++) await exec("true");
    await waitForFullPool(stack, POOL);

    // The default mode's warm handout: one request at a time, paced below the refill rate so
    // every request finds a Ready pod (a tight loop would measure pod start-up instead).
    const paced: BenchRow[] = [];
    if (mode === "replace") {
      const samples: number[] = [];
      for (let i = 0; i < pacedN; i++) {
        const t0 = Date.now();
        const r = await exec("true");
        if (r.result.exitCode !== 0) throw new Error(`paced exec: \`true\` exited ${r.result.exitCode}`);
        samples.push(r.ms);
        await new Promise((res) => setTimeout(res, Math.max(0, PACE_MS - (Date.now() - t0))));
      }
      await waitForFullPool(stack, POOL);
      const e2e = summarize(samples);
      const floor = summarize(await podExecSamples(stack, pacedN));
      paced.push({
        name: "e2e_exec/replace-paced",
        n: e2e.n,
        p50Ms: e2e.p50,
        p99Ms: e2e.p99,
        floorName: "http exec of `true` on a pool pod (no lease)",
        floorP50Ms: floor.p50,
        floorP99Ms: floor.p99,
        extra: { paceMs: PACE_MS, recycle: "replace", execMode: "http", agents: 2, pods: POOL },
      });
      progress(`load/${mode}: paced e2e measured`);
    }

    const pods = await watchPods(stack.cluster.kubeConfig(), namespace);
    let load: Awaited<ReturnType<typeof closedLoop<Timed>>>;
    try {
      load = await closedLoop({ concurrency, perClient, deadlineMs, call: () => exec("true") });
      await waitForFullPool(stack, POOL, 90_000);
    } finally {
      pods.stop();
    }
    const latency = summarize(load.samples.map((s) => s.ms));
    // Pod time per request besides the recycle: the command as the pod saw it.
    const serviceP50 = summarize(load.samples.map((s) => s.result.durationMs)).p50;
    const reqPerSec = (load.samples.length / load.wallMs) * 1000;
    progress(`load/${mode}: throughput ${reqPerSec.toFixed(1)} req/s`);

    let recycle: ReturnType<typeof summarize>;
    let recycleName: string;
    const recycleExtra: Record<string, number> = {};
    if (mode === "replace") {
      recycle = summarize(pods.recycleMs());
      recycleName = "recycle: pod delete + create + Ready";
      const c2r = summarize(pods.createToReadyMs());
      const d2g = summarize(pods.deleteToGoneMs());
      Object.assign(recycleExtra, {
        createToReadyP50Ms: c2r.p50,
        deleteToGoneP50Ms: d2g.p50,
        podsReplaced: c2r.n,
      });
    } else {
      recycle = await timeScrub(stack, 30);
      recycleName = "recycle: /reset + /inspect";
      // Should be 0: a failed scrub falls back to replacing the pod, which would show here.
      recycleExtra.podsReplaced = pods.createToReadyMs().length;
    }

    // Queue wait: demand twice the capacity.
    const queued: Timed[] = [];
    const queueErrors: string[] = [];
    for (let r = 0; r < rounds; r++) {
      await waitForFullPool(stack, POOL, 90_000);
      const settled = await Promise.allSettled(Array.from({ length: POOL * 2 }, () => exec("sleep 0.2")));
      for (const s of settled) {
        if (s.status === "fulfilled") queued.push(s.value);
        else queueErrors.push(s.reason instanceof Error ? s.reason.message : String(s.reason));
      }
    }
    const queueMs = summarize(queued.map((q) => q.result.queueMs));
    // The half that found no free pod: its wait is one command plus one recycle at best.
    const waits = queued.map((q) => q.result.queueMs).sort((a, b) => a - b);
    const secondHalf = summarize(waits.slice(Math.floor(waits.length / 2)));
    const cmd = summarize(queued.map((q) => q.result.durationMs));
    const total = summarize(queued.map((q) => q.ms));
    progress(`load/${mode}: queue wait measured`);

    return [
      ...paced,
      {
        name: `throughput/${mode}`,
        n: latency.n,
        p50Ms: latency.p50,
        p99Ms: latency.p99,
        floorName: recycleName,
        floorP50Ms: recycle.p50,
        floorP99Ms: recycle.p99,
        floorKind: "cost",
        extra: {
          reqPerSec: Number(reqPerSec.toFixed(1)),
          // Every request makes its pod unavailable for one recycle: 8 pods cannot serve more than this.
          recycleCeilingReqPerSec: Number(((POOL * 1000) / (recycle.p50 + serviceP50)).toFixed(1)),
          clients: concurrency,
          perClient,
          pods: POOL,
          errors: load.errors.length,
          recycleN: recycle.n,
          ...recycleExtra,
          ...(load.errors[0] ? { firstError: load.errors[0].slice(0, 120) } : {}),
        },
      },
      {
        name: `queue_wait/${mode}`,
        n: queueMs.n,
        p50Ms: queueMs.p50,
        p99Ms: queueMs.p99,
        floorName: "the command itself (sleep 0.2 durationMs)",
        floorP50Ms: cmd.p50,
        floorP99Ms: cmd.p99,
        floorKind: "cost",
        extra: {
          queuedHalfP50Ms: secondHalf.p50,
          queuedHalfP99Ms: secondHalf.p99,
          concurrent: POOL * 2,
          pods: POOL,
          rounds,
          requestP50Ms: total.p50,
          requestP99Ms: total.p99,
          errors: queueErrors.length,
          ...(queueErrors[0] ? { firstError: queueErrors[0].slice(0, 120) } : {}),
        },
      },
    ];
  });
}

/** The scrub recycle on its own: the agent's HttpScrubber against idle pool pods, round robin. */
async function timeScrub(
  stack: Parameters<Parameters<typeof withStack>[1]>[0],
  n: number,
): Promise<ReturnType<typeof summarize>> {
  const pods = await readyPods(stack);
  if (pods.length === 0) throw new Error("no ready pod to time a scrub on");
  const scrubber = new HttpScrubber({ poolToken: stack.agentEnvFor(REGION, "bench").POOL_TOKEN ?? "" });
  const samples: number[] = [];
  for (let i = 0; i < n + 3; i++) {
    const p = pods[i % pods.length];
    if (!p?.podIP) continue;
    const t0 = performance.now();
    const r = await scrubber.scrub({
      namespace: stack.namespaceOf(REGION),
      pod: p.name,
      podIP: p.podIP,
      fence: p.transitions,
    });
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`scrub of ${p.name}: ${r.error.code} ${r.error.message}`);
    if (i >= 3) samples.push(ms);
  }
  return summarize(samples);
}

export const suite: BenchSuite = { name: "load", run: () => runLoadBench() };
