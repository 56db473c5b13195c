/**
 * Long-lived processes in a sandbox, through the edge (issue 27). One local stack (http exec mode,
 * one agent, pool of 2), one sandbox.
 *
 * - process_first_byte: POST …/processes `echo hi`, then its SSE output until the first byte.
 * - process_stream_lag: a process printing its clock (`date +%s%N`) every 50 ms, read through the
 *   SSE stream: the client's clock at arrival minus the printed one (one machine, one clock).
 * Floors: the agent's own exec-server client (HttpProcesses) on the sandbox's pod: no edge, no
 * tunnel, no Lease renewal, same run.
 */
import { HttpProcesses } from "../cluster-agent/exec/processes.ts";
import type { ProcessOutputEvent } from "../shared/api.ts";
import { readSse } from "../shared/sse.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { sandboxTarget, withSmallStack } from "./with-stack.ts";

export async function runProcessBench(opts: { n?: number } = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 30;
  return withSmallStack("processes", async (stack, { headers, call }) => {
    const sb = await call<{ id: string; pod: string }>(
      "POST",
      "/v1/sandboxes",
      '{"idleTimeoutSeconds":3600}',
    );
    const { target, poolToken } = await sandboxTarget(stack, sb.pod);
    try {
      return await processRows({
        edgeUrl: stack.edgeUrl,
        headers,
        call,
        sbId: sb.id,
        target,
        poolToken,
        n,
      });
    } finally {
      await call("DELETE", `/v1/sandboxes/${sb.id}`).catch(() => undefined);
    }
  });
}

export const suite: BenchSuite = {
  name: "processes",
  run: () => runProcessBench({ n: Number(process.env.BENCH_PROCESS_N ?? 30) }),
};

/** Output events of an SSE body as text chunks, each with the client's clock when it arrived. */
async function* outputChunks(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ text: string; atMs: number }> {
  for await (const m of readSse(body)) {
    if (m.event !== "output") continue;
    const e = JSON.parse(m.data) as ProcessOutputEvent;
    yield { text: Buffer.from(e.data, "base64").toString("latin1"), atMs: Date.now() };
  }
}

/** Lag samples: for each whole line (a `date +%s%N`), arrival minus the time it printed. */
async function lagOf(
  chunks: AsyncGenerator<{ text: string; atMs: number }>,
  lines: number,
): Promise<number[]> {
  const out: number[] = [];
  let buf = "";
  for await (const c of chunks) {
    buf += c.text;
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    for (const line of parts) {
      if (!/^\d{19}$/.test(line)) throw new Error(`not a date +%s%N line: ${line.slice(0, 40)}`);
      out.push(c.atMs - Number(BigInt(line) / 1000n) / 1000);
    }
    if (out.length >= lines) break;
  }
  return out;
}

async function processRows(o: {
  edgeUrl: string;
  headers: Record<string, string>;
  call: <T>(method: string, path: string, body?: string) => Promise<T>;
  sbId: string;
  target: { namespace: string; pod: string; podIP: string; fence: number };
  poolToken: string;
  n: number;
}): Promise<BenchRow[]> {
  const { edgeUrl, headers, call, sbId, target } = o;
  const base = `/v1/sandboxes/${sbId}/processes`;
  const processes = new HttpProcesses({ poolToken: o.poolToken });
  const edgeStream = async (pid: number, since: number) => {
    const res = await fetch(`${edgeUrl}${base}/${pid}/output?since=${since}`, {
      headers: { ...headers, accept: "text/event-stream" },
      signal: AbortSignal.timeout(60_000),
    });
    if (res.status !== 200 || !res.body) throw new Error(`output stream: ${res.status}`);
    return res.body;
  };
  const directStream = async (pid: number, since: number) => {
    const s = await processes.stream(target, pid, since, { signal: AbortSignal.timeout(60_000) });
    if (!s.ok) throw new Error(`direct output stream: ${s.error.code}`);
    return s.value;
  };
  const first = async (body: ReadableStream<Uint8Array>) => {
    for await (const _ of outputChunks(body)) return;
    throw new Error("the stream ended without output");
  };

  const rounds = Math.min(30, o.n);
  const edgeFirst: number[] = [];
  const floorFirst: number[] = [];
  for (let i = 0; i < rounds + 2; i++) {
    let t0 = performance.now();
    const p = await call<{ pid: number }>("POST", base, '{"command":"echo hi"}');
    await first(await edgeStream(p.pid, 0));
    const ms = performance.now() - t0;
    await call("DELETE", `${base}/${p.pid}`);
    t0 = performance.now();
    const d = await processes.start(target, { command: "echo hi" }, { signal: AbortSignal.timeout(30_000) });
    if (!d.ok) throw new Error(`direct start: ${d.error.code}`);
    await first(await directStream(d.value.pid, 0));
    const fms = performance.now() - t0;
    await processes.remove(target, d.value.pid, { signal: AbortSignal.timeout(30_000) });
    if (i < 2) continue; // warm-up
    edgeFirst.push(ms);
    floorFirst.push(fms);
  }

  const clock = await call<{ pid: number }>(
    "POST",
    base,
    '{"command":"while :; do date +%s%N; sleep 0.05; done"}',
  );
  const lines = Math.min(100, o.n);
  const edgeLag = await lagOf(outputChunks(await edgeStream(clock.pid, 0)), lines + 5);
  const info = await call<{ outputBytes: number }>("GET", `${base}/${clock.pid}`);
  const floorLag = await lagOf(outputChunks(await directStream(clock.pid, info.outputBytes)), lines + 5);
  await call("DELETE", `${base}/${clock.pid}`);

  const a = summarize(edgeFirst);
  const fa = summarize(floorFirst);
  // The first lines of each stream are the backlog since the process started: not lag.
  const b = summarize(edgeLag.slice(5));
  const fb = summarize(floorLag.slice(5));
  return [
    {
      name: "process_first_byte",
      n: a.n,
      p50Ms: a.p50,
      p99Ms: a.p99,
      floorName: "the agent's own http start + output stream on the sandbox's pod (no edge, no tunnel)",
      floorP50Ms: fa.p50,
      floorP99Ms: fa.p99,
      extra: { command: "echo hi" },
    },
    {
      name: "process_stream_lag",
      n: b.n,
      p50Ms: b.p50,
      p99Ms: b.p99,
      floorName: "the same stream read straight from the pod's exec server",
      floorP50Ms: fb.p50,
      floorP99Ms: fb.p99,
      extra: { every: "50 ms", clock: "date +%s%N in the pod vs Date.now() here (one machine)" },
    },
  ];
}
