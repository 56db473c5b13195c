/**
 * What the edge adds, and `true` end to end. One local stack (http exec mode, recycle=scrub so a
 * sequential loop never waits for a replacement pod, 2 agent replicas, pool of 8).
 *
 * - edge_overhead: POST /v1/exec `true` through the edge (JWT, flood guard, quota DO, signing,
 *   tunnel DO, WebSocket to the agent, relay verification) next to the same relayed request sent
 *   straight to one agent's own port, signed with the region's relay key — interleaved, so drift
 *   in the machine's load hits both alike.
 * - e2e_exec: the edge figure next to the http exec of `true` on one pool pod (the agent's own
 *   executor, no lease) measured in the same run; the raw spawn is in the notes.
 */
import { SCOPES } from "../shared/api.ts";
import { edgeExec, firstAgentDirect } from "./calls.ts";
import { rawSpawnSamples } from "./exec.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { podExecSamples, progress, withStack } from "./with-stack.ts";

const REGION = "local";

export async function runEdgeBench(opts: { n?: number; deadlineMs?: number } = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 150;
  const deadlineMs = opts.deadlineMs ?? 60_000;
  return withStack({ recycle: "scrub", execMode: "http", poolSize: 8, agentsPerRegion: 2 }, async (stack) => {
    progress("edge: stack up");
    const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
    const direct = await firstAgentDirect(stack, REGION, "bench");
    const check = (what: string, exitCode: number | null) => {
      if (exitCode !== 0) throw new Error(`${what}: \`true\` exited ${exitCode}`);
    };

    for (let i = 0; i < 10; i++) {
      check("edge warm-up", (await edgeExec(stack.edgeUrl, token, "true")).result.exitCode);
      check("direct warm-up", (await direct.exec("true")).result.exitCode);
    }

    // Interleaved: edge, direct, edge, direct...
    const viaEdge: number[] = [];
    const viaAgent: number[] = [];
    const until = Date.now() + deadlineMs;
    for (let i = 0; i < n && Date.now() < until; i++) {
      const e = await edgeExec(stack.edgeUrl, token, "true");
      check("edge", e.result.exitCode);
      viaEdge.push(e.ms);
      const d = await direct.exec("true");
      check("direct", d.result.exitCode);
      viaAgent.push(d.ms);
    }
    const edge = summarize(viaEdge);
    // Each edge call next to the direct call right after it: less sensitive to load drift.
    const paired = summarize(viaEdge.map((e, i) => e - (viaAgent[i] ?? e)));
    const agent = summarize(viaAgent);
    progress(`edge: overhead measured (${edge.n} pairs)`);

    // e2e_exec: a plain sequential loop through the edge, then the floor on an idle pool pod.
    const e2eSamples: number[] = [];
    const until2 = Date.now() + deadlineMs;
    for (let i = 0; i < n && Date.now() < until2; i++) {
      const e = await edgeExec(stack.edgeUrl, token, "true");
      check("edge", e.result.exitCode);
      e2eSamples.push(e.ms);
    }
    const e2e = summarize(e2eSamples);

    const podExec = summarize(await podExecSamples(stack, n));
    const spawn = summarize(await rawSpawnSamples(n));
    progress("edge: e2e measured");

    const common = { recycle: "scrub", execMode: "http", agents: 2, pods: 8 };
    return [
      {
        name: "edge_overhead",
        n: edge.n,
        p50Ms: edge.p50,
        p99Ms: edge.p99,
        floorName: "same signed relay sent straight to an agent's port",
        floorP50Ms: agent.p50,
        floorP99Ms: agent.p99,
        extra: {
          addedP50Ms: Number((edge.p50 - agent.p50).toFixed(2)),
          addedP99Ms: Number((edge.p99 - agent.p99).toFixed(2)),
          pairedDiffP50Ms: paired.p50,
          ...common,
          quota: "TENANT_QUOTA_* raised to 1e6 (bucket still consulted)",
        },
      },
      {
        name: "e2e_exec",
        n: e2e.n,
        p50Ms: e2e.p50,
        p99Ms: e2e.p99,
        floorName: "http exec of `true` on a pool pod (no lease)",
        floorP50Ms: podExec.p50,
        floorP99Ms: podExec.p99,
        extra: { rawSpawnP50Ms: spawn.p50, rawSpawnP99Ms: spawn.p99, ...common },
      },
    ];
  });
}

export const suite: BenchSuite = {
  name: "edge",
  run: () => runEdgeBench({ n: Number(process.env.BENCH_EDGE_N ?? 150) }),
};
