/**
 * Where the milliseconds of one `/v1/exec true` go (issue 15). Per recycle mode (scrub, then
 * replace paced so every request finds a Ready pod), one stack with one agent so the edge and the
 * direct calls reach the same process:
 *
 * - latency/<mode>/edge: the whole call through the edge, client-timed, next to the sum of the
 *   three floors measured in the same run (one Lease CAS, `true` through the exec server, a bare
 *   Worker → DO → WebSocket → back relay); `addedP50Ms` over the direct call;
 * - latency/<mode>/direct: the same signed request straight to the agent's port (interleaved);
 * - latency/<mode>/<span>: p50/p99 of each Server-Timing span of the edge calls, and
 *   `tunnel-minus-agent` (the edge's tunnel round trip less the agent's own total: frames, the DO,
 *   the WebSocket, the agent's tunnel client), each next to its floor where one exists;
 * - latency/<mode>/stream: a streamed command printing `date +%s%N` lines; the client's receive
 *   time minus the time in the line (one machine, one clock).
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { microNow } from "../cluster-agent/k8s/microtime.ts";
import { SCOPES } from "../shared/api.ts";
import { AGENT_EXEC_PARTS, EDGE_EXEC_PARTS, parseServerTiming } from "../shared/spans.ts";
import { readSse } from "../shared/sse.ts";
import { bareRelaySamples } from "./bare-relay.ts";
import { edgeExec, firstAgentDirect, type Timed } from "./calls.ts";
import { type Summary, summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { podExecSamples, progress, waitForFullPool, withStack } from "./with-stack.ts";

const REGION = "local";
const POOL = 8;
const PACE_MS = 250;
const EDGE_PARTS: readonly string[] = EDGE_EXEC_PARTS;
/** Floors are sampled in blocks between blocks of calls, so drift in the machine's load hits both. */
const BLOCK = 20;
const SPAN_ROWS = [...EDGE_PARTS, "edge-total", ...AGENT_EXEC_PARTS, "agent-total"];

export interface LatencyOptions {
  /** Sequential pairs (edge + direct) in scrub mode. */
  n?: number;
  /** Paced pairs in replace mode. */
  pacedN?: number;
  modes?: Array<"scrub" | "replace">;
}

interface Floors {
  leaseCas: Summary;
  execTrue: Summary;
  bareRelay: Summary;
}

export async function runLatencyBench(opts: LatencyOptions = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 150;
  const pacedN = opts.pacedN ?? 60;
  const bareRelay = summarize(await bareRelaySamples(n));
  progress(`latency: bare relay floor p50 ${bareRelay.p50} ms`);
  const rows: BenchRow[] = [
    {
      name: "floor/bare_relay",
      n: bareRelay.n,
      p50Ms: bareRelay.p50,
      p99Ms: bareRelay.p99,
      extra: {
        what: "client -> Worker -> DO -> WebSocket -> Node -> back, nothing else (bench/bare-relay.ts)",
      },
    },
  ];
  for (const mode of opts.modes ?? ["scrub", "replace"]) {
    rows.push(...(await runMode(mode, mode === "scrub" ? n : pacedN, bareRelay)));
  }
  return rows;
}

async function runMode(mode: "scrub" | "replace", n: number, bareRelay: Summary): Promise<BenchRow[]> {
  return withStack({ recycle: mode, execMode: "http", poolSize: POOL, agentsPerRegion: 1 }, async (stack) => {
    progress(`latency/${mode}: stack up`);
    const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
    const direct = await firstAgentDirect(stack, REGION, "bench");
    const check = (what: string, t: Timed) => {
      if (t.result.exitCode !== 0) throw new Error(`${what}: \`true\` exited ${t.result.exitCode}`);
      return t;
    };
    for (let i = 0; i < 10; i++) {
      check("edge warm-up", await edgeExec(stack.edgeUrl, token, "true"));
      check("direct warm-up", await direct.exec("true"));
    }
    await waitForFullPool(stack, POOL);

    const edge: Timed[] = [];
    const viaAgent: Timed[] = [];
    const cas: number[] = [];
    const execTrue: number[] = [];
    const pace = mode === "replace" ? PACE_MS : 0;
    const kc = stack.cluster.kubeConfig();
    for (let done = 0; done < n; ) {
      for (let i = 0; i < BLOCK && done < n; i++, done++) {
        const t0 = Date.now();
        edge.push(check("edge", await edgeExec(stack.edgeUrl, token, "true")));
        await sleep(Math.max(0, pace - (Date.now() - t0)));
        const t1 = Date.now();
        viaAgent.push(check("direct", await direct.exec("true")));
        await sleep(Math.max(0, pace - (Date.now() - t1)));
      }
      // The pod-exec floor runs on an idle pool pod: only once the pool is whole again.
      await waitForFullPool(stack, POOL);
      cas.push(...(await leaseCasSamples(kc, stack.namespaceOf(REGION), BLOCK)));
      execTrue.push(...(await podExecSamples(stack, BLOCK)));
    }
    progress(`latency/${mode}: ${edge.length} pairs and floors measured`);

    const floors: Floors = { leaseCas: summarize(cas), execTrue: summarize(execTrue), bareRelay };
    const stream = summarize(await streamLagSamples(stack.edgeUrl, token, 10, 10));
    progress(`latency/${mode}: stream measured`);
    return rowsOf(mode, edge, viaAgent, floors, stream);
  });
}

function rowsOf(mode: string, edge: Timed[], viaAgent: Timed[], f: Floors, stream: Summary): BenchRow[] {
  const total = summarize(edge.map((t) => t.ms));
  const agent = summarize(viaAgent.map((t) => t.ms));
  const spans = edge.map((t) => new Map(parseServerTiming(t.serverTiming).map((s) => [s.name, s.dur])));
  const directSpans = viaAgent.map(
    (t) => new Map(parseServerTiming(t.serverTiming).map((s) => [s.name, s.dur])),
  );
  const series = (name: string, from = spans) =>
    summarize(from.map((m) => m.get(name)).filter((v): v is number => v !== undefined));
  const floorP50 = f.leaseCas.p50 + f.execTrue.p50 + f.bareRelay.p50;
  const floorP99 = f.leaseCas.p99 + f.execTrue.p99 + f.bareRelay.p99;
  const partsSum = summarize(spans.map((m) => EDGE_PARTS.reduce((s, k) => s + (m.get(k) ?? 0), 0)));
  const unaccounted = summarize(
    edge.map((t, i) => t.ms - EDGE_PARTS.reduce((s, k) => s + (spans[i]?.get(k) ?? 0), 0)),
  );
  const common = {
    recycle: mode,
    execMode: "http",
    agents: 1,
    pods: POOL,
    ...(mode === "replace" ? { paceMs: PACE_MS } : {}),
  };
  const r2 = (x: number) => Number(x.toFixed(2));
  const rows: BenchRow[] = [
    {
      name: `latency/${mode}/edge`,
      n: total.n,
      p50Ms: total.p50,
      p99Ms: total.p99,
      floorName: "sum of floors: Lease CAS + exec of `true` + bare relay",
      floorP50Ms: floorP50,
      floorP99Ms: floorP99,
      extra: {
        xFloorP50: r2(total.p50 / floorP50),
        xFloorP99: r2(total.p99 / floorP99),
        addedOverDirectP50Ms: r2(total.p50 - agent.p50),
        edgePartsSumP50Ms: partsSum.p50,
        unaccountedP50Ms: unaccounted.p50,
        leaseCasP50Ms: f.leaseCas.p50,
        execTrueP50Ms: f.execTrue.p50,
        bareRelayP50Ms: f.bareRelay.p50,
        ...common,
      },
    },
    {
      name: `latency/${mode}/direct`,
      n: agent.n,
      p50Ms: agent.p50,
      p99Ms: agent.p99,
      floorName: "Lease CAS + exec of `true`",
      floorP50Ms: f.leaseCas.p50 + f.execTrue.p50,
      floorP99Ms: f.leaseCas.p99 + f.execTrue.p99,
      extra: {
        agentTotalP50Ms: series("total", directSpans).p50,
        agentExecP50Ms: series("exec", directSpans).p50,
        ...common,
      },
    },
  ];
  const floorOf: Record<string, [string, Summary]> = {
    "agent-acquire": ["one Lease CAS PUT", f.leaseCas],
    "agent-exec": ["exec of `true` through the exec server", f.execTrue],
    "tunnel-minus-agent": ["bare Worker -> DO -> WebSocket relay", f.bareRelay],
  };
  const tunnelMinusAgent = summarize(
    spans
      .map((m) => (m.get("edge-tunnel") ?? Number.NaN) - (m.get("agent-total") ?? Number.NaN))
      .filter((v) => Number.isFinite(v)),
  );
  for (const name of [...SPAN_ROWS, "tunnel-minus-agent"]) {
    const s = name === "tunnel-minus-agent" ? tunnelMinusAgent : series(name);
    if (s.n === 0) continue;
    const floor = floorOf[name];
    rows.push({
      name: `latency/${mode}/${name}`,
      n: s.n,
      p50Ms: s.p50,
      p99Ms: s.p99,
      ...(floor ? { floorName: floor[0], floorP50Ms: floor[1].p50, floorP99Ms: floor[1].p99 } : {}),
      extra: {
        ...common,
        ...(name.startsWith("edge-") ? { clock: "workerd, 1 ms ticks, advances on I/O" } : {}),
      },
    });
  }
  rows.push({
    name: `latency/${mode}/stream`,
    n: stream.n,
    p50Ms: stream.p50,
    p99Ms: stream.p99,
    extra: {
      what: "`date +%s%N` line printed in the pod -> SSE event parsed by the client",
      goalMs: 5,
      ...common,
    },
  });
  return rows;
}

let leaseSeq = 0;

/** One raw CAS PUT of a Lease (a Lease of its own, outside the pool's label selector). */
async function leaseCasSamples(kc: KubeConfig, namespace: string, n: number): Promise<number[]> {
  const api = kc.makeApiClient(CoordinationV1Api);
  const name = `bench-latency-floor-${process.pid}-${++leaseSeq}`;
  let lease: V1Lease = await api.createNamespacedLease({
    namespace,
    body: { metadata: { name }, spec: { leaseDurationSeconds: 30, leaseTransitions: 0 } },
  });
  const out: number[] = [];
  try {
    for (let i = 0; i < n + 5; i++) {
      const t0 = performance.now();
      lease = await api.replaceNamespacedLease({
        name,
        namespace,
        body: { ...lease, spec: { ...lease.spec, holderIdentity: `floor/${i}`, renewTime: microNow() } },
      });
      if (i >= 5) out.push(performance.now() - t0);
    }
  } finally {
    await api.deleteNamespacedLease({ name, namespace }).catch(() => undefined);
  }
  return out;
}

/**
 * `runs` streamed execs each printing `lines` timestamps 20 ms apart; per line, the client's
 * wall-clock receive time minus the nanosecond time the line carries.
 */
async function streamLagSamples(
  edgeUrl: string,
  token: string,
  runs: number,
  lines: number,
): Promise<number[]> {
  const command = `for i in $(seq ${lines}); do date +%s%N; sleep 0.02; done`;
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    // The pod prints wall-clock time; performance.now() is monotonic and drifts from the wall clock
    // when it is slewed or stepped (-0.6 s was seen after an hour), so re-anchor before each run.
    const wallOffset = wallClockOffsetMs();
    const res = await fetch(`${edgeUrl}/v1/exec`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "text/event-stream",
      },
      body: JSON.stringify({ command }),
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200 || !res.body) throw new Error(`stream: HTTP ${res.status}`);
    let partial = "";
    for await (const m of readSse(res.body)) {
      const nowMs = wallOffset + performance.now();
      if (m.event !== "stdout") continue;
      partial += (JSON.parse(m.data) as { data: string }).data;
      const complete = partial.split("\n");
      partial = complete.pop() ?? "";
      for (const line of complete) {
        if (/^\d{19}$/.test(line)) out.push(nowMs - Number(BigInt(line) / 1000n) / 1000);
      }
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wall clock minus performance.now(), to a few microseconds: Date.now() ticks in whole ms, so spin
 * until it ticks over and take the offset at that instant.
 */
function wallClockOffsetMs(): number {
  const start = Date.now();
  let now = start;
  while (now === start) now = Date.now();
  return now - performance.now();
}

export const suite: BenchSuite = {
  name: "latency",
  run: () =>
    runLatencyBench({
      n: Number(process.env.BENCH_LATENCY_N ?? 150),
      pacedN: Number(process.env.BENCH_LATENCY_PACED_N ?? 60),
    }),
};
