/**
 * Sandboxes that live across requests, through the edge. One local stack (http exec mode, 2 agent
 * replicas, pool of 8, recycle=replace: deleting a sandbox deletes its pod).
 *
 * - sandbox_create_first_exec: POST /v1/sandboxes then POST /v1/sandboxes/:id/exec `true`, from
 *   the first byte sent to the exec result (warm pool; each sandbox deleted after, paced so the pool refills).
 * - sandbox_exec_true: `true` in one existing sandbox, sequential.
 * - sandbox_file_{write,read}/{1MiB,16MiB,64MiB}: PUT / GET of random bytes through the edge;
 *   the notes carry the peak RSS growth of workerd and of the serving agent over each size's runs.
 * Floors: the agent's own http executor / file client on the sandbox's pod (no edge, no tunnel,
 * no Lease renewal), same run.
 */
import { randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import { HttpFiles } from "../cluster-agent/exec/files.ts";
import { HttpExecutor } from "../cluster-agent/exec/http-executor.ts";
import { childPids, peakRssKiB, resetPeakRss } from "../devstack/proc-memory.ts";
import { SCOPES } from "../shared/api.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { BENCH_AGENT_ENV, BENCH_EDGE_VARS, progress, waitForFullPool, withStack } from "./with-stack.ts";

const REGION = "local";
const MiB = 1024 * 1024;

export async function runSandboxBench(opts: { n?: number } = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 100;
  return withStack(
    {
      execMode: "http",
      poolSize: 8,
      agentsPerRegion: 2,
      edgeVars: { ...BENCH_EDGE_VARS },
      agentEnv: { ...BENCH_AGENT_ENV, TENANT_MAX_SANDBOXES: "100" },
    },
    async (stack) => {
      progress("sandboxes: stack up");
      await waitForFullPool(stack, 8);
      const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
      const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
      const call = async (method: string, path: string, body?: BodyInit, type = "application/json") => {
        const res = await fetch(`${stack.edgeUrl}${path}`, {
          method,
          headers: { ...headers, "content-type": type },
          ...(body !== undefined ? { body } : {}),
          signal: AbortSignal.timeout(120_000),
        });
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (!res.ok)
          throw new Error(
            `${method} ${path}: ${res.status} ${new TextDecoder().decode(bytes).slice(0, 200)}`,
          );
        return bytes;
      };
      // The file rows' client is node:http, as the floor's (HttpFiles) is: fetch copies a Uint8Array
      // body before sending it and costs several times node:http's CPU per byte, CPU this
      // machine's cores would otherwise give the edge and the agent. A read is kept whole, as the
      // floor's is.
      const keepAlive = new Agent({ keepAlive: true });
      const transfer = (method: "PUT" | "GET", path: string, body?: Uint8Array) =>
        new Promise<number>((resolve, reject) => {
          const req = request(`${stack.edgeUrl}${path}`, {
            method,
            agent: keepAlive,
            timeout: 120_000,
            headers: {
              authorization: headers.authorization,
              ...(body
                ? { "content-type": "application/octet-stream", "content-length": String(body.byteLength) }
                : {}),
            },
          });
          req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out`)));
          req.on("error", reject);
          req.on("response", (res) => {
            const parts: Buffer[] = [];
            res.on("data", (b: Buffer) => parts.push(b));
            res.on("error", reject);
            res.on("end", () =>
              res.statusCode === 200
                ? resolve(Buffer.concat(parts).byteLength)
                : reject(
                    new Error(
                      `${method} ${path}: ${res.statusCode} ${Buffer.concat(parts).toString().slice(0, 200)}`,
                    ),
                  ),
            );
          });
          req.end(body);
        });
      const json = <T>(b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as T;
      const execTrue = async (id: string) => {
        const r = json<{ exitCode: number }>(
          await call("POST", `/v1/sandboxes/${id}/exec`, '{"command":"true"}'),
        );
        if (r.exitCode !== 0) throw new Error(`\`true\` exited ${r.exitCode}`);
      };

      // create → first exec, paced so every create finds a Ready pod (that is the warm case).
      const createSamples: number[] = [];
      const rounds = Math.min(20, n);
      for (let i = 0; i < rounds + 2; i++) {
        const t0 = performance.now();
        const sb = json<{ id: string }>(await call("POST", "/v1/sandboxes", "{}"));
        await execTrue(sb.id);
        const ms = performance.now() - t0;
        if (i >= 2) createSamples.push(ms);
        await call("DELETE", `/v1/sandboxes/${sb.id}`);
        await waitForFullPool(stack, 8);
      }
      progress("sandboxes: create → first exec measured");

      const sb = json<{ id: string; pod: string }>(
        await call("POST", "/v1/sandboxes", '{"idleTimeoutSeconds":3600}'),
      );
      for (let i = 0; i < 5; i++) await execTrue(sb.id);
      const execSamples: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await execTrue(sb.id);
        execSamples.push(performance.now() - t0);
      }
      progress("sandboxes: exec in a sandbox measured");

      // The floors talk to the sandbox's own pod directly, at its current fence.
      const pool = (await stack.pools())[0];
      const pod = pool?.pods.find((p) => p.name === sb.pod);
      if (!pod?.podIP) throw new Error("the sandbox's pod is not in the pool snapshot");
      const poolToken = stack.agentEnvFor(REGION, "bench").POOL_TOKEN ?? "";
      const target = {
        namespace: stack.namespaceOf(REGION),
        pod: pod.name,
        podIP: pod.podIP,
        fence: pod.transitions,
      };
      const executor = new HttpExecutor({ poolToken });
      const floorExec: number[] = [];
      for (let i = 0; i < n + 5; i++) {
        const t0 = performance.now();
        const r = await executor.exec(target, {
          command: "true",
          timeoutMs: 10_000,
          signal: AbortSignal.timeout(20_000),
        });
        if (!r.ok) throw new Error(`exec floor: ${r.error.code}`);
        if (i >= 5) floorExec.push(performance.now() - t0);
      }
      const files = new HttpFiles({ poolToken });

      const fileRows: BenchRow[] = [];
      for (const [label, size, count] of [
        ["1MiB", MiB, Math.min(30, n)],
        ["16MiB", 16 * MiB, 5],
        ["64MiB", 64 * MiB, 3],
      ] as const) {
        const data = new Uint8Array(randomBytes(size));
        const procs = {
          workerd: childPids(process.pid, "workerd")[0],
          agents: stack.agents.map((a) => a.child.pid),
        };
        const pids = [procs.workerd, ...procs.agents].filter((p): p is number => p !== undefined);
        const rssBefore = new Map(pids.map((p) => [p, resetPeakRss(p)]));
        const growthMiB = (pid: number | undefined) =>
          pid === undefined
            ? Number.NaN
            : Number(((peakRssKiB(pid) - (rssBefore.get(pid) ?? 0)) / 1024).toFixed(1));
        const w: number[] = [];
        const r: number[] = [];
        const fw: number[] = [];
        const fr: number[] = [];
        for (let i = 0; i < count + 1; i++) {
          let t0 = performance.now();
          await transfer("PUT", `/v1/sandboxes/${sb.id}/files/bench/${label}.bin`, data);
          const wMs = performance.now() - t0;
          t0 = performance.now();
          const back = await transfer("GET", `/v1/sandboxes/${sb.id}/files/bench/${label}.bin`);
          const rMs = performance.now() - t0;
          if (back !== size) throw new Error(`read ${back} of ${size} bytes`);
          t0 = performance.now();
          const fwr = await files.write(target, `floor/${label}.bin`, data, {
            signal: AbortSignal.timeout(120_000),
            maxBytes: size,
          });
          if (!fwr.ok) throw new Error(`file floor: ${fwr.error.code}`);
          const fwMs = performance.now() - t0;
          t0 = performance.now();
          const frr = await files.read(target, `floor/${label}.bin`, {
            signal: AbortSignal.timeout(120_000),
          });
          if (!frr.ok || frr.value.kind !== "file") throw new Error("file floor read failed");
          await new Response(frr.value.body).arrayBuffer();
          const frMs = performance.now() - t0;
          if (i === 0) continue; // warm-up
          w.push(wMs);
          r.push(rMs);
          fw.push(fwMs);
          fr.push(frMs);
        }
        const mbps = (ms: number) => Number((size / MiB / (ms / 1000)).toFixed(1));
        for (const [op, samples, floor] of [
          ["write", w, fw],
          ["read", r, fr],
        ] as const) {
          const s = summarize(samples);
          const f = summarize(floor);
          fileRows.push({
            name: `sandbox_file_${op}/${label}`,
            n: s.n,
            p50Ms: s.p50,
            p99Ms: s.p99,
            floorName: `the agent's own http file ${op} to the sandbox's pod (no edge, no tunnel)`,
            floorP50Ms: f.p50,
            floorP99Ms: f.p99,
            extra: {
              mibPerSecP50: mbps(s.p50),
              floorMibPerSecP50: mbps(f.p50),
              workerdPeakGrowthMiB: growthMiB(procs.workerd),
              agentPeakGrowthMiB: Math.max(...procs.agents.map((p) => growthMiB(p))),
            },
          });
        }
        progress(`sandboxes: files ${label} measured`);
      }
      keepAlive.destroy();
      await call("DELETE", `/v1/sandboxes/${sb.id}`);

      const created = summarize(createSamples);
      const exec = summarize(execSamples);
      const floor = summarize(floorExec);
      const common = { execMode: "http", agents: 2, pods: 8 };
      return [
        {
          name: "sandbox_create_first_exec",
          n: created.n,
          p50Ms: created.p50,
          p99Ms: created.p99,
          floorName: "http exec of `true` on the pod (no edge, no Lease)",
          floorP50Ms: floor.p50,
          floorP99Ms: floor.p99,
          extra: { ...common, paced: "pool refilled to 8 Ready before each create" },
        },
        {
          name: "sandbox_exec_true",
          n: exec.n,
          p50Ms: exec.p50,
          p99Ms: exec.p99,
          floorName: "http exec of `true` on the sandbox's pod (no edge, no Lease renewal)",
          floorP50Ms: floor.p50,
          floorP99Ms: floor.p99,
          extra: common,
        },
        ...fileRows,
      ];
    },
  );
}

export const suite: BenchSuite = {
  name: "sandboxes",
  run: () => runSandboxBench({ n: Number(process.env.BENCH_SANDBOX_N ?? 100) }),
};
