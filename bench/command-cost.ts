import type { Stack } from "../devstack/stack.ts";
import { SCOPES } from "../shared/api.ts";
import { cpuByProcess } from "./machine-cpu.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { backToPoolSize, progress, waitForFullPool, withStack } from "./with-stack.ts";

const POOL = 8;
const COMMANDS = Number(process.env.BENCH_COMMAND_COST_N ?? 200);
/**
 * scrub (default): the path every command pays; replace: the same plus a pod's whole life
 * (created, probed, watched by both agents, deleted), paced one command at a time.
 */
const RECYCLE = process.env.BENCH_COMMAND_COST_RECYCLE === "replace" ? "replace" : "scrub";

/**
 * `command_cost`: where one command's CPU goes, by process, on a local stack (scrub: no pod
 * start-up in the path, so this is the path every command pays in every mode): COMMANDS sequential
 * `POST /v1/exec {command: "true"}` through the edge, the CPU each of the stack's processes spent
 * over them, per command. Floor: the exec server's own work is the `exec_http` row.
 */
/** Until the pool is whole again (a replaced pod's successor is up); throws after 60 s. */
async function backToFullFreePool(stack: Stack): Promise<void> {
  if (Number.isNaN(await backToPoolSize(stack, POOL, Date.now(), 60_000, 100)))
    throw new Error("the pool did not come back to its size within 60 s");
}

export const suite: BenchSuite = {
  name: "command-cost",
  async run(): Promise<BenchRow[]> {
    return await withStack(
      {
        recycle: RECYCLE,
        execMode: "http",
        poolSize: POOL,
        agentsPerRegion: 2,
        // e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where the agents' share goes.
        ...(process.env.BENCH_AGENT_NODE_OPTIONS
          ? { agentEnv: { NODE_OPTIONS: process.env.BENCH_AGENT_NODE_OPTIONS } }
          : {}),
      },
      async (stack) => {
        await waitForFullPool(stack, POOL, 120_000);
        const token = await stack.issuer.mint({ tenant: "cost", subject: "bench", scopes: [SCOPES.exec] });
        const call = async () => {
          const res = await fetch(`${stack.edgeUrl}/v1/exec`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body: JSON.stringify({ command: "true" }),
            signal: AbortSignal.timeout(30_000),
          });
          await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`exec: ${res.status}`);
        };
        for (let i = 0; i < 20; i++) {
          await call();
          if (RECYCLE === "replace") await backToFullFreePool(stack);
        }
        // Let the warm-up's scrubs finish before counting.
        await new Promise((r) => setTimeout(r, 1000));
        const agentPids = new Set(stack.agents.map((a) => a.child.pid ?? -1));
        const kubeletPid = stack.cluster.kubelet.pid;
        const idle0 = cpuByProcess(agentPids, kubeletPid);
        await new Promise((r) => setTimeout(r, 3000));
        const idle1 = cpuByProcess(agentPids, kubeletPid);
        const t0 = performance.now();
        for (let i = 0; i < COMMANDS; i++) {
          await call();
          // replace: one pod start-up at a time, finished before the next command (as in pod-start).
          if (RECYCLE === "replace") await backToFullFreePool(stack);
        }
        await new Promise((r) => setTimeout(r, 500));
        const wall = performance.now() - t0;
        const end = cpuByProcess(agentPids, kubeletPid);
        const rows: BenchRow[] = [];
        let total = 0;
        for (const [label, ms] of end) {
          const idlePerMs = ((idle1.get(label) ?? 0) - (idle0.get(label) ?? 0)) / 3000;
          const per = (ms - (idle1.get(label) ?? 0) - idlePerMs * wall) / COMMANDS;
          if (per < 0.05) continue;
          total += per;
          rows.push({
            name: `command_cost/${label}`,
            n: COMMANDS,
            p50Ms: per,
            p99Ms: per,
            extra: { what: "CPU ms per command" },
          });
        }
        rows.push({
          name: "command_cost/total",
          n: COMMANDS,
          p50Ms: total,
          p99Ms: total,
          extra: { recycle: RECYCLE, wallMsPerCommand: Number((wall / COMMANDS).toFixed(2)) },
        });
        for (const r of rows) progress(`command-cost: ${r.name} ${r.p50Ms.toFixed(2)} ms CPU per command`);
        return rows;
      },
    );
  },
};
