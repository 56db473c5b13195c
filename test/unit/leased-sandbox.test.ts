/**
 * The leased-sandbox pipeline that /v1/exec and chat share: the real module with small doubles of
 * the SandboxLease / Executor contracts (cluster-agent/exec/executor.ts). The same paths against
 * devcluster are in test/integration/agent-http.test.ts and chat-sandbox.test.ts.
 */
import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type {
  ExecCall,
  ExecTarget,
  Executor,
  SandboxFiles,
  SandboxLease,
  SandboxProcesses,
} from "../../cluster-agent/exec/executor.ts";
import { LeasedSandbox, withLeasedSandbox } from "../../cluster-agent/requests/leased-sandbox.ts";
import type { ExecOutcome } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { PoolEvent } from "../../shared/events.ts";

const outcome: ExecOutcome = {
  exitCode: 0,
  signal: null,
  timedOut: false,
  truncated: false,
  stdout: "hi\n",
  stderr: "",
  stdoutBytes: 3,
  stderrBytes: 0,
  durationMs: 5,
};

function setup(run: (t: ExecTarget, c: ExecCall) => Promise<Result<ExecOutcome>> = async () => ok(outcome)) {
  const lost = new AbortController();
  let releases = 0;
  const lease: SandboxLease & { queueMs: number } = {
    namespace: "ns",
    pod: "p0",
    podIP: "127.0.1.2",
    fence: 4,
    queueMs: 12,
    lost: lost.signal,
    release: async () => {
      releases++;
    },
  };
  const executor: Executor = { mode: "http", exec: run };
  const bus = new EventBus("agent-a");
  const events: PoolEvent[] = [];
  bus.on((e) => events.push(e));
  const logged: Array<Record<string, unknown>> = [];
  const log = { warn: (obj: object, msg: string) => void logged.push({ msg, ...obj }) };
  const deps = { acquire: async () => ok(lease), executor, bus, log };
  const ctx = { tenant: "t1", requestId: "r1", signal: new AbortController().signal };
  return { deps, ctx, lost, events, logged, releases: () => releases };
}

describe("leased-sandbox pipeline", () => {
  it("every command emits exec.started and exec.finished with its outcome; release once", async () => {
    const { deps, ctx, events, releases } = setup();
    const r = await withLeasedSandbox(deps, ctx, async (sb) => {
      await sb.run({ command: "echo one", timeoutMs: 1000 });
      return sb.run({ command: "echo two\nmore", timeoutMs: 1000 });
    });
    expect(r.ok).toBe(true);
    expect(events.map((e) => [e.type, e.requestId, e.tenant, e.pod])).toEqual([
      ["exec.started", "r1", "t1", "p0"],
      ["exec.finished", "r1", "t1", "p0"],
      ["exec.started", "r1", "t1", "p0"],
      ["exec.finished", "r1", "t1", "p0"],
    ]);
    const last = events[3];
    expect(last?.type === "exec.finished" && last.data).toEqual({
      commandPreview: "echo two …",
      queueMs: 12,
      exitCode: 0,
      durationMs: 5,
      timedOut: false,
    });
    expect(events[0]?.type === "exec.started" && events[0].data.mode).toBe("http");
    expect(releases()).toBe(1);
  });

  it("a failure's upstream words (its cause) are logged with the request id, not answered", async () => {
    const { deps, ctx, logged } = setup(async () =>
      err(
        new AppError("sandbox_failed", "POST /exec on p0 failed", {
          cause: new Error("connect ECONNREFUSED 10.44.3.17:8080"),
        }),
      ),
    );
    const r = await withLeasedSandbox(deps, ctx, (sb) => sb.run({ command: "true", timeoutMs: 1000 }));
    expect(r.ok ? "" : JSON.stringify(r.error.toBody("r1"))).not.toContain("10.44.3.17");
    expect(logged).toEqual([
      {
        msg: "sandbox call failed",
        requestId: "r1",
        pod: "p0",
        code: "sandbox_failed",
        error: "POST /exec on p0 failed",
        cause: "connect ECONNREFUSED 10.44.3.17:8080",
      },
    ]);
  });

  it("a fence refusal from the pod (stale_lease) is lease_lost, like a lost lease", async () => {
    const { deps, ctx, events } = setup(async () => err(new AppError("stale_lease", "fence 4 < 5")));
    const r = await withLeasedSandbox(deps, ctx, (sb) => sb.run({ command: "ls", timeoutMs: 1000 }));
    expect(!r.ok && r.error.code).toBe("lease_lost");
    const fin = events.find((e) => e.type === "exec.finished");
    expect(fin?.type === "exec.finished" && fin.data.error).toBe("lease_lost");
  });

  it("a fence refusal on a file call (stale_lease) is lease_lost too, for every file operation", async () => {
    const { deps, ctx } = setup();
    const refused = async () => err(new AppError("stale_lease", "fence 4 < 5"));
    const seen: AbortSignal[] = [];
    const files: SandboxFiles = {
      read: async (_t, _p, o) => {
        seen.push(o.signal);
        return refused();
      },
      write: async (_t, _p, _b, o) => {
        seen.push(o.signal);
        return refused();
      },
      list: async (_t, _p, o) => {
        seen.push(o.signal);
        return refused();
      },
      remove: async (_t, _p, o) => {
        seen.push(o.signal);
        return refused();
      },
    };
    const codes = await withLeasedSandbox({ ...deps, files }, ctx, async (sb) =>
      ok([
        await sb.readFile("a.txt"),
        await sb.writeFile("a.txt", new Uint8Array([1]), { maxBytes: 10 }),
        await sb.listFiles("."),
        await sb.removeFile("a.txt"),
      ]),
    );
    expect(codes.ok && codes.value.map((r) => !r.ok && r.error.code)).toEqual([
      "lease_lost",
      "lease_lost",
      "lease_lost",
      "lease_lost",
    ]);
    // Each call ran under a combined signal, not the caller's own alone.
    expect(seen).toHaveLength(4);
    expect(seen.every((s) => s !== ctx.signal)).toBe(true);
  });

  it("process calls: a fence refusal is lease_lost, a lost lease answers before the pod is called, no processes is 501", async () => {
    const { deps, ctx, lost } = setup();
    let calls = 0;
    const refused = (signal: AbortSignal) => {
      calls++;
      expect(signal).not.toBe(ctx.signal);
      return Promise.resolve(err(new AppError("stale_lease", "fence 4 < 5")));
    };
    const processes = {
      get: (_t: ExecTarget, _pid: number, o: { signal: AbortSignal }) => refused(o.signal),
    };
    const none = await withLeasedSandbox(deps, ctx, (sb) =>
      sb.onProcesses((p, t, signal) => p.get(t, 7, { signal })),
    );
    expect(!none.ok && [none.error.code, none.error.status]).toEqual(["not_supported_in_api_mode", 501]);
    const withProcesses = { ...deps, processes: processes as unknown as SandboxProcesses };
    const fenced = await withLeasedSandbox(withProcesses, ctx, (sb) =>
      sb.onProcesses((p, t, signal) => p.get(t, 7, { signal })),
    );
    expect(!fenced.ok && fenced.error.code).toBe("lease_lost");
    lost.abort(new AppError("sandbox_not_found", "deleted"));
    const gone = await withLeasedSandbox(withProcesses, ctx, (sb) =>
      sb.onProcesses((p, t, signal) => p.get(t, 7, { signal })),
    );
    expect(!gone.ok && gone.error.code).toBe("sandbox_not_found");
    expect(calls).toBe(1);
  });

  it("a lease lost during a file call aborts it and answers the lease's own AppError reason", async () => {
    const { deps, ctx, lost } = setup();
    const files: SandboxFiles = {
      read: (_t, _p, o) =>
        new Promise((resolve) => {
          o.signal.addEventListener("abort", () =>
            resolve(err(new AppError("request_cancelled", "stopped"))),
          );
          setTimeout(
            () => lost.abort(new AppError("sandbox_not_found", "sandbox sb was deleted while in use")),
            5,
          );
        }),
      write: async () => ok({ path: "", size: 0 }),
      list: async () => ok({ entries: [], truncated: false }),
      remove: async () => ok(undefined),
    };
    const r = await withLeasedSandbox({ ...deps, files }, ctx, (sb) => sb.readFile("big"));
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "sandbox_not_found",
      "sandbox sb was deleted while in use",
    ]);
  });

  it("a lease lost mid-command kills it (its signal aborts) and answers lease_lost", async () => {
    const { deps, ctx, lost } = setup(
      (_t, c) =>
        new Promise((resolve) => {
          c.signal.addEventListener("abort", () => resolve(err(new AppError("sandbox_failed", "killed"))));
          setTimeout(() => lost.abort(new Error("renewal failed")), 5);
        }),
    );
    const r = await withLeasedSandbox(deps, ctx, (sb) => sb.run({ command: "sleep 9", timeoutMs: 10_000 }));
    expect(!r.ok && r.error.code).toBe("lease_lost");
  });

  it("releases on every path, also when the user throws", async () => {
    const { deps, ctx, releases } = setup();
    await expect(
      withLeasedSandbox(deps, ctx, async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(releases()).toBe(1);
  });

  it("returns the result before the recycle ends; recycled settles when it has", async () => {
    const { deps, ctx } = setup();
    let finishRecycle = () => {};
    const recycling = new Promise<void>((r) => {
      finishRecycle = r;
    });
    const lease = await deps.acquire();
    if (!lease.ok) throw new Error("setup lease");
    const slow = { ...deps, acquire: async () => ok({ ...lease.value, release: () => recycling }) };
    let sandbox: LeasedSandbox | undefined;
    const r = await withLeasedSandbox(slow, { ...ctx, onReleased: (sb) => (sandbox = sb) }, (sb) =>
      sb.run({ command: "true", timeoutMs: 1000 }),
    );
    expect(r.ok).toBe(true);
    let recycled = false;
    void sandbox?.recycled.then(() => (recycled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(recycled).toBe(false);
    finishRecycle();
    await sandbox?.recycled;
    expect(recycled).toBe(true);
  });

  it("reports the queue position of its own request only", async () => {
    const { deps, ctx } = setup();
    const seen: number[] = [];
    const acquire = async () => {
      const data = { position: 2, depth: 3, tenantAtCap: false };
      deps.bus.emit({ type: "queue.entered", requestId: "other", data });
      deps.bus.emit({ type: "queue.entered", requestId: "r1", data });
      return deps.acquire();
    };
    const taken = await LeasedSandbox.take({ ...deps, acquire }, { ...ctx, onQueued: (p) => seen.push(p) });
    expect(taken.ok).toBe(true);
    expect(seen).toEqual([2]);
  });
});
