import { Agent, createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecServerClient } from "../../cluster-agent/exec/exec-server-client.ts";
import type { ExecCall, ExecTarget } from "../../cluster-agent/exec/executor.ts";
import { HttpFiles } from "../../cluster-agent/exec/files.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { HttpScrubber } from "../../cluster-agent/exec/scrubber.ts";
import { ExecOutcomeSchema } from "../../shared/api.ts";
import { AppError } from "../../shared/errors.ts";
import { type SandboxServerHandle, sandboxClient, startSandboxServer } from "../support/sandbox-server.ts";

const POOL_TOKEN = "http-exec-pool-token";

// HttpExecutor and HttpScrubber against the real exec server in bubblewrap.
describe("http executor", () => {
  let h: SandboxServerHandle;
  let executor: HttpExecutor;
  let scrubber: HttpScrubber;
  let target: ExecTarget;
  const call = (c: Partial<ExecCall> & { command: string }): ExecCall => ({
    timeoutMs: 10_000,
    signal: new AbortController().signal,
    ...c,
  });
  const processes = async () => {
    const inspect = sandboxClient(h);
    for (let i = 0; i < 50; i++) {
      const n = JSON.parse((await inspect("/inspect")).text).processes as number;
      if (n === 0) return 0;
      await new Promise((r) => setTimeout(r, 50));
    }
    return JSON.parse((await inspect("/inspect")).text).processes as number;
  };

  beforeAll(async () => {
    // The server holds only this pod's token; the executor and scrubber derive it from the pool token.
    h = await startSandboxServer({ token: podExecToken(POOL_TOKEN, "default", "sandbox-test") });
    executor = new HttpExecutor({ poolToken: POOL_TOKEN, port: h.port });
    scrubber = new HttpScrubber({ poolToken: POOL_TOKEN, port: h.port });
    target = { namespace: "default", pod: "sandbox-test", podIP: h.host, fence: 2 };
  });
  afterAll(async () => {
    await h?.close();
  });

  it("returns a full ExecOutcome with exit codes, separate streams and stdin", async () => {
    const r = await executor.exec(target, call({ command: "cat; echo err >&2; exit 3", stdin: "in\n" }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(ExecOutcomeSchema.parse(r.value)).toEqual(r.value);
    expect(r.value).toMatchObject({
      exitCode: 3,
      signal: null,
      timedOut: false,
      truncated: false,
      stdout: "in\n",
      stderr: "err\n",
      stdoutBytes: 3,
      stderrBytes: 4,
    });
    const missing = await executor.exec(target, call({ command: "nope-not-here" }));
    expect(missing.ok && missing.value.exitCode).toBe(127);
  });

  it("survives a command that ignores a large stdin (EPIPE) and one that reads it all", async () => {
    const big = "x".repeat(1_000_000);
    const ignored = await executor.exec(target, call({ command: "exit 0", stdin: big }));
    expect(ignored.ok && ignored.value.exitCode).toBe(0);
    const counted = await executor.exec(target, call({ command: "wc -c", stdin: big }));
    expect(counted.ok && counted.value.stdout.trim()).toBe("1000000");
  });

  it("streams capped output to onOutput and reports true byte counts", async () => {
    const small = new HttpExecutor({ poolToken: POOL_TOKEN, port: h.port, outputCapBytes: 1000 });
    let streamed = 0;
    const r = await small.exec(
      target,
      call({ command: "head -c 5000000 /dev/zero", onOutput: (_s, chunk) => (streamed += chunk.byteLength) }),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(streamed).toBe(1000);
    expect(r.value.stdout.length).toBe(1000);
    expect(r.value).toMatchObject({ truncated: true, stdoutBytes: 5_000_000 });
  });

  it("reports a timeout with the group killed", async () => {
    const r = await executor.exec(target, call({ command: "sleep 100 & sleep 100", timeoutMs: 1000 }));
    expect(r.ok && r.value).toMatchObject({ timedOut: true, exitCode: null, signal: "SIGKILL" });
    expect(await processes()).toBe(0);
  });

  it("abort kills the command in the sandbox and returns the abort reason", async () => {
    const ac = new AbortController();
    let sawOutput: () => void = () => {};
    const outputSeen = new Promise<void>((r) => (sawOutput = r));
    const running = executor.exec(
      target,
      call({
        command: "echo go; sleep 1000",
        timeoutMs: 60_000,
        signal: ac.signal,
        onOutput: () => sawOutput(),
      }),
    );
    await outputSeen;
    ac.abort(new AppError("lease_lost", "lease renewal failed"));
    const r = await running;
    expect(!r.ok && r.error.code).toBe("lease_lost");
    expect(await processes()).toBe(0);
  });

  it("maps a stale fence to stale_lease and a bad cwd to invalid_request", async () => {
    const newer = { ...target, fence: 3 };
    expect((await executor.exec(newer, call({ command: "true" }))).ok).toBe(true);
    const stale = await executor.exec(target, call({ command: "true" }));
    expect(!stale.ok && stale.error.code).toBe("stale_lease");
    target = newer;
    const cwd = await executor.exec(target, call({ command: "true", cwd: "/etc" }));
    expect(!cwd.ok && cwd.error.code).toBe("invalid_request");
  });

  it("scrubs: reset then verified clean", async () => {
    const r = await executor.exec(
      target,
      call({
        command:
          "echo x > /workspace/a; touch /tmp/.b; setsid sleep 1000 </dev/null >/dev/null 2>&1 & sleep 0.3",
      }),
    );
    expect(r.ok).toBe(true);
    const s = await scrubber.scrub(target);
    expect(s).toEqual({ ok: true, value: { killed: 1, removed: 2 } });
    const after = await executor.exec(target, call({ command: "ls -A /workspace /tmp" }));
    expect(after.ok && after.value.stdout).toBe("/tmp:\n\n/workspace:\n");
  });

  it("retries once when a kept-alive connection was closed by the server just as it was reused", async () => {
    const result = { type: "result", exitCode: 0, signal: null, timedOut: false, truncated: false };
    const frames = `${JSON.stringify({ ...result, stdoutBytes: 0, stderrBytes: 0, durationMs: 1 })}\n`;
    const seen = new Map<unknown, number>();
    let requests = 0;
    const flaky: Server = createServer((req, res) => {
      requests += 1;
      const n = (seen.get(req.socket) ?? 0) + 1;
      seen.set(req.socket, n);
      req.resume();
      // The second request on the first connection meets a server that is closing it.
      if (seen.size === 1 && n === 2) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(frames);
    });
    await new Promise<void>((r) => flaky.listen(0, "127.0.0.1", () => r()));
    try {
      const e = new HttpExecutor({ poolToken: "x", port: (flaky.address() as AddressInfo).port });
      expect((await e.exec(target, call({ command: "true" }))).ok).toBe(true);
      const second = await e.exec(target, call({ command: "true" }));
      expect(second.ok).toBe(true);
      expect(requests).toBe(3);
      expect(seen.size).toBe(2);
    } finally {
      flaky.closeAllConnections();
      await new Promise((r) => flaky.close(r));
    }
  });

  it("one exec-server client: warm() serves the first file call; one error map and one abort code for commands, files and scrub", async () => {
    const agent = new Agent({ keepAlive: true });
    const client = new ExecServerClient({ poolToken: POOL_TOKEN, port: h.port, agent });
    const [commands, files, scrub] = [
      new HttpExecutor({ client }),
      new HttpFiles({ client }),
      new HttpScrubber({ client }),
    ];
    const free = () => Object.values(agent.freeSockets).flat();
    commands.warm(h.host);
    await expect.poll(() => free().length, { timeout: 5_000, interval: 10 }).toBe(1);
    const socket = free()[0];
    const listed = await files.list(target, ".", { signal: new AbortController().signal });
    expect(listed.ok).toBe(true);
    // The file call went out on the warmed socket and brought it back: no second connection.
    await expect.poll(() => free().length, { timeout: 5_000, interval: 10 }).toBe(1);
    expect(free()[0]).toBe(socket);

    // A fence below the one the pod has seen is refused the same way on every endpoint.
    const stale = { ...target, fence: target.fence - 1 };
    const live = () => new AbortController().signal;
    const refused = [
      await commands.exec(stale, call({ command: "true" })),
      await files.read(stale, "a", { signal: live() }),
      await files.write(stale, "a", new Uint8Array([1]), { signal: live(), maxBytes: 10 }),
      await files.remove(stale, "a", { signal: live() }),
      await scrub.scrub(stale),
    ];
    expect(refused.map((r) => !r.ok && r.error.code)).toEqual(Array(5).fill("stale_lease"));

    // An abort that is not an AppError is one code for every kind of call.
    const aborted = AbortSignal.abort(new Error("client left"));
    const cancelled = [
      await commands.exec(target, call({ command: "true", signal: aborted })),
      await files.read(target, ".", { signal: aborted }),
      await files.list(target, ".", { signal: aborted }),
    ];
    expect(cancelled.map((r) => !r.ok && r.error.code)).toEqual(Array(3).fill("request_cancelled"));
    agent.destroy();
  });

  it("warm() opens the connection the first command then uses; an unreachable pod is ignored", async () => {
    const agent = new Agent({ keepAlive: true });
    const warmed = new HttpExecutor({ poolToken: POOL_TOKEN, port: h.port, agent });
    const free = () => Object.values(agent.freeSockets).flat();
    warmed.warm(h.host);
    await expect.poll(() => free().length, { timeout: 5_000, interval: 10 }).toBe(1);
    const socket = free()[0];
    const r = await warmed.exec(target, call({ command: "true" }));
    expect(r.ok && r.value.exitCode).toBe(0);
    // The same socket went out and came back: no second connection was opened.
    await expect.poll(() => free().length, { timeout: 5_000, interval: 10 }).toBe(1);
    expect(free()[0]).toBe(socket);
    // Nothing listens on this port: the warm-up fails silently and leaves no socket behind.
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const nowhere = new HttpExecutor({ poolToken: POOL_TOKEN, port: closed, agent });
    nowhere.warm("127.0.0.1");
    await new Promise((r2) => setTimeout(r2, 200));
    expect(free()).toEqual([socket]);
    agent.destroy();
  });

  it("fails with sandbox_failed, not a hang, when the server dies mid-stream or is unreachable", async () => {
    // A server that starts a stream and then drops the connection without a result frame.
    const dying: Server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(`${JSON.stringify({ type: "stdout", data: Buffer.from("partial").toString("base64") })}\n`);
      setTimeout(() => res.socket?.destroy(), 100);
    });
    await new Promise<void>((r) => dying.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (dying.address() as AddressInfo).port;
      const e = new HttpExecutor({ poolToken: "x", port });
      const t0 = Date.now();
      const r = await e.exec(target, call({ command: "true", timeoutMs: 30_000 }));
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(!r.ok && r.error.code).toBe("sandbox_failed");
    } finally {
      await new Promise((r) => dying.close(r));
    }
    const sandboxDies = executor.exec(
      target,
      call({ command: "echo started; sleep 1000", timeoutMs: 60_000 }),
    );
    await new Promise((r) => setTimeout(r, 500));
    h.child.kill("SIGKILL");
    const r = await sandboxDies;
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
    const gone = await executor.exec(target, call({ command: "true" }));
    expect(!gone.ok && gone.error.code).toBe("sandbox_failed");
  });
});
