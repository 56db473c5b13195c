/**
 * Long-lived processes in a sandbox, through the edge (issue 27). One local stack (http exec mode,
 * one agent, pool of 2), one sandbox.
 *
 * - process_first_byte: POST …/processes `echo hi`, then its SSE output until the first byte.
 * - process_stream_lag: a process printing its clock (`date +%s%N`) every 50 ms, read through the
 *   SSE stream: the client's clock at arrival minus the printed one (one machine, one clock).
 * - terminal_keystroke: one byte typed into a `tty` `cat` over the terminal WebSocket
 *   (`…/processes/:pid/tty`) until the terminal's echo of it comes back on the same socket.
 * Floors: the agent's own exec-server client (HttpProcesses) on the sandbox's pod: no edge, no
 * tunnel, no Lease renewal, same run (for the keystroke: a stdin POST, the echo read from the
 * output stream).
 */
import { HttpProcesses } from "../cluster-agent/exec/processes.ts";
import { BEARER_SUBPROTOCOL_PREFIX, type ProcessOutputEvent, TERMINAL_SUBPROTOCOL } from "../shared/api.ts";
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

  const keys = await keystrokes({
    edgeUrl,
    headers,
    call,
    base,
    processes,
    target,
    rounds: Math.min(50, o.n),
  });

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
    keys,
  ];
}

/**
 * Keystroke round trips: a `tty` `cat` (the terminal echoes what is typed), one letter at a time,
 * timed from send to the echo arriving. Through the edge: the terminal WebSocket. Floor: a stdin
 * POST to the pod's exec server and the echo read from the output stream, from here.
 */
async function keystrokes(o: {
  edgeUrl: string;
  headers: Record<string, string>;
  call: <T>(method: string, path: string, body?: string) => Promise<T>;
  base: string;
  processes: HttpProcesses;
  target: { namespace: string; pod: string; podIP: string; fence: number };
  rounds: number;
}): Promise<BenchRow> {
  const letter = (i: number) => String.fromCharCode(97 + (i % 26));
  const token = (o.headers.authorization ?? "").replace(/^Bearer /i, "");
  const p = await o.call<{ pid: number }>("POST", o.base, '{"command":"cat","tty":true}');
  const ws = new WebSocket(`${o.edgeUrl.replace(/^http/, "ws")}${o.base}/${p.pid}/tty`, [
    TERMINAL_SUBPROTOCOL,
    `${BEARER_SUBPROTOCOL_PREFIX}${token}`,
  ]);
  ws.binaryType = "arraybuffer";
  let seen = "";
  let waiting: { needle: string; resolve: () => void } | undefined;
  ws.onmessage = (m) => {
    if (typeof m.data === "string") return; // JSON control messages (exit)
    seen += Buffer.from(m.data as ArrayBuffer).toString("latin1");
    if (waiting && seen.includes(waiting.needle)) waiting.resolve();
  };
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("terminal WebSocket failed"));
  });
  const echoOf = (needle: string) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no echo of ${needle} within 10 s`)), 10_000);
      waiting = {
        needle,
        resolve: () => {
          clearTimeout(t);
          waiting = undefined;
          resolve();
        },
      };
      if (seen.includes(needle)) waiting.resolve();
    });
  const edge: number[] = [];
  for (let i = 0; i < o.rounds + 3; i++) {
    seen = "";
    const ch = letter(i);
    const t0 = performance.now();
    const echoed = echoOf(ch);
    ws.send(new TextEncoder().encode(ch));
    await echoed;
    if (i >= 3) edge.push(performance.now() - t0);
  }
  ws.close();

  const floor: number[] = [];
  const info = await o.call<{ outputBytes: number }>("GET", `${o.base}/${p.pid}`);
  const ac = new AbortController();
  const stream = await o.processes.stream(o.target, p.pid, info.outputBytes, { signal: ac.signal });
  if (!stream.ok) throw new Error(`direct output stream: ${stream.error.code}`);
  const chunks = outputChunks(stream.value);
  for (let i = 0; i < o.rounds + 3; i++) {
    const ch = letter(i).toUpperCase();
    const t0 = performance.now();
    const w = await o.processes.stdin(o.target, p.pid, new TextEncoder().encode(ch), false, {
      signal: AbortSignal.timeout(10_000),
    });
    if (!w.ok) throw new Error(`direct stdin: ${w.error.code}`);
    for (let got = ""; !got.includes(ch); ) {
      const c = await chunks.next();
      if (c.done) throw new Error("the output stream ended");
      got += c.value.text;
    }
    if (i >= 3) floor.push(performance.now() - t0);
  }
  ac.abort();
  await o.call("DELETE", `${o.base}/${p.pid}`);
  const k = summarize(edge);
  const f = summarize(floor);
  return {
    name: "terminal_keystroke",
    n: k.n,
    p50Ms: k.p50,
    p99Ms: k.p99,
    floorName: "a stdin POST to the pod's exec server + its echo on the output stream (no edge, no tunnel)",
    floorP50Ms: f.p50,
    floorP99Ms: f.p99,
    extra: { process: "cat on a tty (the terminal echoes)" },
  };
}
