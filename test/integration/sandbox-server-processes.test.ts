import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type {
  ProcessExitEvent,
  ProcessInfo,
  ProcessOutput,
  ProcessOutputEvent,
} from "../../cluster-agent/sandbox-server/protocol.ts";
import { readSse } from "../../shared/sse.ts";
import {
  type SandboxServerHandle,
  sandboxClient,
  processesSettle as settle,
  startSandboxServer,
} from "../support/sandbox-server.ts";

// Long-lived processes in the real exec server inside bubblewrap (own PID namespace, uid 1000):
// output at an offset, an SSE stream cut and reattached, stdin, signals to the group, the ring's
// drop count, the per-sandbox limits and /reset.
const LOOP = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done";
const WAIT_LIMIT_MS = 60_000;

/** "line0\n" … "line<n>\n": what LOOP has printed once it printed line n. */
const linesUpTo = (n: number) => Array.from({ length: n + 1 }, (_, i) => `line${i}\n`).join("");

function client(h: SandboxServerHandle, fence = 1) {
  const headers = (extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${h.token}`,
    "x-fence-token": String(fence),
    ...extra,
  });
  const call = async (
    path: string,
    init: { method?: string; json?: unknown; bytes?: string; headers?: Record<string, string> } = {},
  ) => {
    const res = await fetch(`${h.url}${path}`, {
      method: init.method ?? (init.json === undefined && init.bytes === undefined ? "GET" : "POST"),
      headers: headers({
        ...(init.json !== undefined ? { "content-type": "application/json" } : {}),
        ...(init.headers ?? {}),
      }),
      body: init.json !== undefined ? JSON.stringify(init.json) : init.bytes,
      signal: AbortSignal.timeout(WAIT_LIMIT_MS),
    });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  const start = async (body: Record<string, unknown>) => {
    const r = await call("/processes", { json: body });
    expect(r.status, r.text).toBe(201);
    return r.json() as unknown as ProcessInfo;
  };
  const read = async (pid: number, since: number, query = "") => {
    const r = await call(`/processes/${pid}/output?since=${since}${query}`);
    expect(r.status, r.text).toBe(200);
    const body = r.json() as unknown as ProcessOutput;
    return { ...body, bytes: Buffer.from(body.data, "base64") };
  };
  /** Long-polls the output from 0 until `done(text)` holds (throws if the process ends first); no fixed sleeps. */
  const waitForOutput = async (pid: number, done: (text: string) => boolean) => {
    let text = "";
    let at = 0;
    const deadline = Date.now() + WAIT_LIMIT_MS;
    for (;;) {
      const r = await read(pid, at, "&waitMs=2000");
      expect(r.dropped).toBe(0);
      text += r.bytes.toString();
      at = r.next;
      if (done(text)) return { text, next: at, eof: r.eof };
      if (r.eof || Date.now() > deadline)
        throw new Error(`output never matched; got ${JSON.stringify(text)}`);
    }
  };
  /** Reads the SSE output from `since` until `enough(bytes)` (then cuts the stream) or the exit event. */
  const stream = async (
    pid: number,
    since: { query?: number; lastEventId?: number },
    enough: (bytes: Buffer) => boolean,
  ) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), WAIT_LIMIT_MS);
    const res = await fetch(
      `${h.url}/processes/${pid}/output${since.query !== undefined ? `?since=${since.query}` : ""}`,
      {
        headers: headers({
          accept: "text/event-stream",
          ...(since.lastEventId !== undefined ? { "last-event-id": String(since.lastEventId) } : {}),
        }),
        signal: ctl.signal,
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    let bytes = Buffer.alloc(0);
    let lastId: number | undefined;
    let dropped = 0;
    let exit: ProcessExitEvent | undefined;
    const events: ProcessOutputEvent[] = [];
    try {
      for await (const m of readSse(res.body as ReadableStream<Uint8Array>)) {
        lastId = m.id === undefined ? lastId : Number(m.id);
        if (m.event === "exit") {
          exit = JSON.parse(m.data) as ProcessExitEvent;
          continue;
        }
        const ev = JSON.parse(m.data) as ProcessOutputEvent;
        events.push(ev);
        dropped += ev.dropped;
        bytes = Buffer.concat([bytes, Buffer.from(ev.data, "base64")]);
        // Every event's id is where the next read continues.
        expect(Number(m.id)).toBe(ev.offset + Buffer.from(ev.data, "base64").length);
        if (enough(bytes)) break; // cuts the stream: readSse cancels the body
      }
    } finally {
      clearTimeout(timer);
    }
    return { bytes, lastId, dropped, exit, events };
  };
  return { call, start, read, waitForOutput, stream };
}

describe("long-lived processes in the exec server (bubblewrap)", () => {
  let h: SandboxServerHandle;
  let c: ReturnType<typeof client>;
  const processesSettle = (want: number) => settle(sandboxClient(h, 1), want);

  beforeAll(async () => {
    h = await startSandboxServer();
    c = client(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("reads a running process's output at any offset, exactly", async () => {
    const p = await c.start({ command: LOOP });
    expect(p).toMatchObject({ running: true, command: LOOP, cwd: "/workspace", exitCode: null });
    expect(p.pid).toBeGreaterThan(1);
    const seen = await c.waitForOutput(p.pid, (t) => t.includes("line20\n"));
    expect(seen.text.startsWith(linesUpTo(20))).toBe(true);
    const k = linesUpTo(4).length; // "line5\n" starts here
    const at = await c.read(p.pid, k);
    expect(at).toMatchObject({ offset: k, dropped: 0, eof: false });
    expect(at.bytes.subarray(0, seen.text.length - k).toString()).toBe(seen.text.slice(k));
    expect(at.next).toBe(k + at.bytes.length);
    const small = await c.read(p.pid, k, "&maxBytes=6");
    expect(small.bytes.toString()).toBe("line5\n");
    expect(small.next).toBe(k + 6);

    const listed = (await c.call("/processes")).json().processes as ProcessInfo[];
    expect(listed.map((x) => x.pid)).toContain(p.pid);
    const del = await c.call(`/processes/${p.pid}`, { method: "DELETE" });
    expect(del.status, del.text).toBe(200);
    expect(del.json()).toMatchObject({ running: false, signal: "SIGKILL", exitCode: null });
    const gone = await c.call(`/processes/${p.pid}`);
    expect(gone.status).toBe(404);
    expect(gone.json().error).toMatchObject({ code: "process_not_found" });
  });

  it("an SSE stream cut mid-way and reattached from its last id loses and repeats no byte", async () => {
    const p = await c.start({ command: LOOP });
    const first = await c.stream(p.pid, { query: 0 }, (b) => b.toString().includes("line10\n"));
    expect(first.lastId).toBe(first.bytes.length);
    // Reattach by Last-Event-ID (what an EventSource does), then once more by ?since=.
    const second = await c.stream(p.pid, { lastEventId: first.lastId }, (b) =>
      b.toString().includes("line25\n"),
    );
    expect(second.events[0]?.offset).toBe(first.lastId);
    const third = await c.stream(p.pid, { query: second.lastId }, (b) => b.toString().includes("line40\n"));
    const joined = Buffer.concat([first.bytes, second.bytes, third.bytes]).toString();
    expect(first.dropped + second.dropped + third.dropped).toBe(0);
    // Contiguous lines from line0: a lost byte or a repeated one breaks the sequence.
    const lastLine = Number(/line(\d+)\n$/.exec(joined)?.[1]);
    expect(lastLine).toBeGreaterThanOrEqual(40);
    expect(joined).toBe(linesUpTo(lastLine));
    // And it is what the ring holds from 0.
    const whole = await c.read(p.pid, 0);
    expect(whole.bytes.subarray(0, joined.length).toString()).toBe(joined);
    await c.call(`/processes/${p.pid}`, { method: "DELETE" });
  });

  it("stdin reaches `cat` and comes back; eof ends it with exit 0; stdin after that is 409", async () => {
    const p = await c.start({ argv: ["cat"] });
    const w = await c.call(`/processes/${p.pid}/stdin`, { bytes: "hello\n" });
    expect(w.status, w.text).toBe(200);
    expect(w.json()).toMatchObject({ written: 6, stdinOpen: true });
    await c.waitForOutput(p.pid, (t) => t === "hello\n");
    const last = await c.call(`/processes/${p.pid}/stdin?eof=1`, { bytes: "bye" });
    expect(last.json()).toMatchObject({ written: 3, stdinOpen: false });
    const end = await c.stream(p.pid, { query: 0 }, () => false);
    expect(end.bytes.toString()).toBe("hello\nbye");
    expect(end.exit).toEqual({ exitCode: 0, signal: null, timedOut: false, outputBytes: 9 });
    const info = (await c.call(`/processes/${p.pid}`)).json();
    expect(info).toMatchObject({ running: false, exitCode: 0, stdinOpen: false });
    const listed = (await c.call("/processes")).json().processes as ProcessInfo[];
    expect(listed.find((x) => x.pid === p.pid)).toMatchObject({ running: false, exitCode: 0 });
    const late = await c.call(`/processes/${p.pid}/stdin`, { bytes: "more" });
    expect(late.status).toBe(409);
    expect(late.json().error).toMatchObject({ code: "process_exited", exitCode: 0 });
    const sig = await c.call(`/processes/${p.pid}/signal`, { json: { signal: "SIGTERM" } });
    expect(sig.status).toBe(409);
    expect(sig.json().error).toMatchObject({ code: "process_exited", exitCode: 0 });
  });

  it("GET /processes/<pid>?waitMs answers at the exit, output on the way does not end the wait (the agent's exit watch)", async () => {
    const p = await c.start({ command: "read x; echo got $x; read y; exit 3" });
    const waiting = c.call(`/processes/${p.pid}?waitMs=30000`);
    // Output while it waits: the answer still waits for the exit.
    await c.call(`/processes/${p.pid}/stdin`, { bytes: "one\n" });
    await c.waitForOutput(p.pid, (t) => t === "got one\n");
    await c.call(`/processes/${p.pid}/stdin`, { bytes: "two\n" });
    const r = await waiting;
    expect(r.status, r.text).toBe(200);
    expect(r.json()).toMatchObject({ pid: p.pid, running: false, exitCode: 3 });
    // Still running after the wait: the answer says so.
    const sleeper = await c.start({ command: "sleep 600" });
    const short = await c.call(`/processes/${sleeper.pid}?waitMs=200`);
    expect(short.json()).toMatchObject({ running: true });
    expect((await c.call(`/processes/${sleeper.pid}?waitMs=40000`)).status).toBe(400);
    expect((await c.call(`/processes/${sleeper.pid}`, { method: "DELETE" })).status).toBe(200);
  });

  it("a signal goes to the process group; killing the group kills a child the shell forked", async () => {
    const trap = await c.start({
      command: 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done',
    });
    await c.waitForOutput(trap.pid, (t) => t.includes("ready\n"));
    const bad = await c.call(`/processes/${trap.pid}/signal`, { json: { signal: "SIGSEGV" } });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatchObject({ code: "invalid_request" });
    const sent = await c.call(`/processes/${trap.pid}/signal`, { json: { signal: "SIGTERM" } });
    expect(sent.status, sent.text).toBe(200);
    const ended = await c.stream(trap.pid, { query: 0 }, () => false);
    // The shell's foreground `sleep` got the SIGTERM too (same group): sh may report it "Terminated".
    expect(ended.bytes.toString()).toMatch(/^ready\n(Terminated\n)?got-term\n$/);
    expect(ended.exit).toMatchObject({ exitCode: 3 });

    const p = await c.start({ command: "sleep 1000 & echo child=$!; wait" });
    const out = await c.waitForOutput(p.pid, (t) => t.includes("\n"));
    const child = Number(/child=(\d+)/.exec(out.text)?.[1]);
    expect(child).toBeGreaterThan(1);
    expect(await processesSettle(2)).toBe(2); // the shell and its sleep
    const del = await c.call(`/processes/${p.pid}`, { method: "DELETE" });
    expect(del.json()).toMatchObject({ running: false, signal: "SIGKILL" });
    expect(await processesSettle(0)).toBe(0);
  });

  it("a process that writes faster than the ring holds: dropped bytes are counted, the server stays up", async () => {
    const lines = 3000;
    const p = await c.start({
      command: `i=0; while [ $i -lt ${lines} ]; do echo line$i; i=$((i+1)); done; echo END`,
      ringBytes: 4096,
    });
    const total = linesUpTo(lines - 1).length + "END\n".length;
    // Wait for the exit by its output: the stream ends with the exit event.
    const s = await c.stream(p.pid, { query: 0 }, () => false);
    expect(s.exit).toMatchObject({ exitCode: 0, outputBytes: total });
    const fromZero = await c.read(p.pid, 0);
    expect(fromZero).toMatchObject({ offset: total - 4096, dropped: total - 4096, next: total, eof: true });
    expect(fromZero.bytes.toString()).toBe(`${linesUpTo(lines - 1)}END\n`.slice(total - 4096));
    // The stream from 0 said the same: what it got plus what it was told it lost is everything.
    expect(s.dropped + s.bytes.length).toBe(total);
    expect(s.bytes.toString().endsWith(`line${lines - 1}\nEND\n`)).toBe(true);

    // 64 MB as fast as the pipe goes, nobody reading: the ring stays 4 KiB, the server answers.
    const flood = await c.start({ command: "head -c 67108864 /dev/zero; echo END", ringBytes: 4096 });
    const done = await c.stream(flood.pid, { query: 0 }, () => false);
    expect(done.exit).toMatchObject({ exitCode: 0, outputBytes: 67108864 + 4 });
    expect(done.dropped).toBeGreaterThan(60_000_000);
    expect((await c.call("/health")).status).toBe(200);
    const past = await c.call(`/processes/${flood.pid}/output?since=${67108864 + 5}`);
    expect(past.status).toBe(400);
  });

  it("refuses bad input with stable codes", async () => {
    const cases: Array<[string, Record<string, unknown>, number, string]> = [
      ["both command and argv", { command: "true", argv: ["true"] }, 400, "invalid_request"],
      ["neither", { cwd: "/workspace" }, 400, "invalid_request"],
      ["an unknown field", { command: "true", pty: true }, 400, "invalid_request"],
      ["a size without a tty", { command: "true", cols: 80 }, 400, "invalid_request"],
      ["a cwd outside the workspace", { command: "true", cwd: "/tmp" }, 400, "invalid_request"],
      ["a bad env name", { command: "true", env: { "A-B": "x" } }, 400, "invalid_request"],
      ["a negative timeout", { command: "true", timeoutSeconds: -1 }, 400, "invalid_request"],
      ["a tiny ring", { command: "true", ringBytes: 10 }, 400, "invalid_request"],
      ["a missing program", { argv: ["no-such-program-xyz"] }, 400, "spawn_failed"],
    ];
    for (const [what, body, status, code] of cases) {
      const r = await c.call("/processes", { json: body });
      expect(r.status, what).toBe(status);
      expect(r.json().error, what).toMatchObject({ code });
    }
    const unknown = await c.call("/processes/999999/stdin", { bytes: "x" });
    expect(unknown.status).toBe(404);
    expect(unknown.json().error).toMatchObject({ code: "process_not_found" });
    expect((await c.call("/processes/999999/output")).status).toBe(404);
    expect((await c.call("/processes/abc")).status).toBe(404);
    // A pid beyond the kernel's range is no such process too, not a missing route.
    const huge = await c.call("/processes/9999999");
    expect(huge.status).toBe(404);
    expect(huge.json().error).toMatchObject({ code: "process_not_found" });
    expect((await c.call("/processes/1/x/y")).json().error).toMatchObject({ code: "not_found" });
    const noToken = await fetch(`${h.url}/processes`, { headers: { "x-fence-token": "1" } });
    expect(noToken.status).toBe(401);
    const timeout = await c.start({ command: "sleep 1000", timeoutSeconds: 1 });
    const ended = await c.stream(timeout.pid, { query: 0 }, () => false);
    expect(ended.exit).toMatchObject({ timedOut: true, exitCode: null, signal: "SIGKILL" });
  });

  it("a tty process is an interactive shell on a pty; resize changes `stty size`", async () => {
    const sh = await c.start({ argv: ["sh"], tty: true, cols: 100, rows: 30 });
    expect(sh.tty).toBe(true);
    const type = async (line: string) => {
      const w = await c.call(`/processes/${sh.pid}/stdin`, { bytes: line });
      expect(w.status, w.text).toBe(200);
    };
    await type("stty size\n");
    await c.waitForOutput(sh.pid, (t) => t.includes("30 100\r\n"));
    // The pty echoes the typed line (`echo h""i`, maybe before the prompt), then the shell answers
    // `hi` with the terminal's CRLF: only the answer contains "hi\r\n".
    await type('echo h""i\n');
    const typed = await c.waitForOutput(sh.pid, (t) => t.includes("hi\r\n"));
    expect(typed.text).toContain('echo h""i\r\n');
    const resized = await c.call(`/processes/${sh.pid}/resize`, { json: { cols: 120, rows: 40 } });
    expect(resized.status, resized.text).toBe(200);
    await type("stty size\n");
    await c.waitForOutput(sh.pid, (t) => t.includes("40 120\r\n"));
    await type("exit 5\n");
    const end = await c.stream(sh.pid, { query: 0 }, () => false);
    expect(end.exit).toMatchObject({ exitCode: 5 });

    // The program under the pty leads a session of its own: delete must reach it and its children
    // even when they ignore the hangup that closing the pty sends.
    const stubborn = await c.start({
      command: "trap '' HUP TERM; sleep 1000 & echo started; wait",
      tty: true,
    });
    await c.waitForOutput(stubborn.pid, (t) => t.includes("started"));
    expect(await processesSettle(3)).toBe(3); // script, sh, sleep
    const del = await c.call(`/processes/${stubborn.pid}`, { method: "DELETE" });
    expect(del.json()).toMatchObject({ running: false });
    expect(await processesSettle(0)).toBe(0);

    const plain = await c.start({ command: "sleep 1000" });
    const refused = await c.call(`/processes/${plain.pid}/resize`, { json: { cols: 80, rows: 24 } });
    expect(refused.status).toBe(409);
    expect(refused.json().error).toMatchObject({ code: "not_a_tty" });
    const bad = await c.call(`/processes/${plain.pid}/resize`, { json: { cols: 0, rows: 24 } });
    expect(bad.status).toBe(400);
    await c.call(`/processes/${plain.pid}`, { method: "DELETE" });
  });

  it("/reset kills every process, ends their streams and empties the table", async () => {
    const a = await c.start({ command: LOOP });
    const b = await c.start({ command: "sleep 1000 & sleep 1000" });
    await c.waitForOutput(a.pid, (t) => t.includes("line1\n"));
    const watching = c.stream(a.pid, { query: 0 }, () => false);
    const reset = await c.call("/reset", { method: "POST" });
    expect(reset.status, reset.text).toBe(200);
    expect((await watching).exit).toMatchObject({ signal: "SIGKILL" });
    expect((await c.call("/processes")).json().processes).toEqual([]);
    expect((await c.call(`/processes/${b.pid}`)).status).toBe(404);
    expect(await processesSettle(0)).toBe(0);
  });

  it("a newer lease holder's fence kills processes started under an older one", async () => {
    const p = await c.start({ command: LOOP });
    await c.waitForOutput(p.pid, (t) => t.includes("line0\n"));
    const newer = client(h, 2);
    const ended = await newer.stream(p.pid, { query: 0 }, () => false);
    expect(ended.exit).toMatchObject({ signal: "SIGKILL" });
    expect((await c.call("/processes")).status).toBe(409);
  });
});

describe("per-sandbox process limits", () => {
  let h: SandboxServerHandle;
  let c: ReturnType<typeof client>;
  beforeAll(async () => {
    h = await startSandboxServer({
      env: {
        PROCESS_LIMIT: "2",
        PROCESS_KEEP_EXITED: "2",
        PROCESS_RING_BYTES: "16384",
        PROCESS_RING_TOTAL_BYTES: "65536",
      },
    });
    c = client(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("refuses a process over the count (429 process_limit) and a ring over the byte budget (429 ring_limit)", async () => {
    const one = await c.start({ command: "sleep 1000" });
    await c.start({ command: "sleep 1000" });
    const third = await c.call("/processes", { json: { command: "sleep 1000" } });
    expect(third.status).toBe(429);
    expect(third.json().error).toMatchObject({ code: "process_limit" });
    await c.call(`/processes/${one.pid}`, { method: "DELETE" });
    const big = await c.call("/processes", { json: { command: "true", ringBytes: 65536 } });
    expect(big.status).toBe(429);
    expect(big.json().error).toMatchObject({ code: "ring_limit" });
    const fits = await c.call("/processes", { json: { command: "echo ok", ringBytes: 32768 } });
    expect(fits.status, fits.text).toBe(201);
    // Exited processes give their ring back when a new one needs the room.
    const okPid = (fits.json() as unknown as ProcessInfo).pid;
    await c.waitForOutput(okPid, (t) => t === "ok\n");
    expect((await c.stream(okPid, { query: 0 }, () => false)).exit).toMatchObject({ exitCode: 0 });
    const again = await c.call("/processes", { json: { command: "true", ringBytes: 49152 } });
    expect(again.status, again.text).toBe(201);
    expect((await c.call(`/processes/${okPid}`)).status).toBe(404);
  });

  it("keeps only the most recent exited processes, with their exit codes", async () => {
    for (const p of (await c.call("/processes")).json().processes as ProcessInfo[]) {
      if (p.running) await c.call(`/processes/${p.pid}`, { method: "DELETE" });
    }
    for (const code of [3, 4, 5]) {
      const p = await c.start({ command: `exit ${code}`, ringBytes: 4096 });
      expect((await c.stream(p.pid, { query: 0 }, () => false)).exit).toMatchObject({ exitCode: code });
    }
    const exited = ((await c.call("/processes")).json().processes as ProcessInfo[]).filter((p) => !p.running);
    expect(exited.map((p) => p.exitCode)).toEqual([5, 4]);
  });
});
