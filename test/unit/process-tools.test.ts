import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ProcessInfo } from "../../shared/api.ts";
import { ok } from "../../shared/errors.ts";
import { parseToolArgs } from "../../shared/tools/definitions.ts";
import {
  PROCESS_TOOL_OUTPUT_BYTES,
  type ProcessToolBackend,
  runProcessTool,
  startProcess,
  stopProcess,
} from "../../shared/tools/process-tools.ts";
import type { ToolResult } from "../../shared/tools/run-tool.ts";

// The process tools' logic over a scripted backend (the pod's side is covered by the exec server's
// integration tests and the chat and MCP suites against the stack): what a read with a wait
// returns, where the next one goes on, how stop escalates, and what the model is told.

/** One process whose output grows by the chunks a test appends; time is vitest's fake clock. */
function scriptedProcess() {
  let output = new Uint8Array(0);
  let info: ProcessInfo = {
    pid: 7,
    command: "srv",
    argv: null,
    tty: false,
    cwd: "/workspace",
    startedAt: "2026-12-07T00:00:00.000Z",
    running: true,
    exitCode: null,
    signal: null,
    timedOut: false,
    endedAt: null,
    outputBytes: 0,
    outputStart: 0,
    ringBytes: 1 << 20,
    stdinOpen: true,
  };
  const calls: string[] = [];
  /** Bytes to append when the clock reaches a time (ms since the start). */
  const plan: Array<{
    atMs: number;
    text: string;
    exit?: { exitCode: number | null; signal: string | null };
  }> = [];
  const t0 = Date.now();
  const advance = () => {
    while (plan.length > 0 && Date.now() - t0 >= plan[0]!.atMs) {
      const step = plan.shift()!;
      const add = new TextEncoder().encode(step.text);
      const next = new Uint8Array(output.length + add.length);
      next.set(output);
      next.set(add, output.length);
      output = next;
      info = { ...info, outputBytes: output.length };
      if (step.exit) info = { ...info, running: false, ...step.exit };
    }
  };
  const backend: ProcessToolBackend = {
    start: async () => ok(info),
    list: async () => ok([info]),
    get: async (pid) => {
      calls.push(`get ${pid}`);
      advance();
      return pid === info.pid
        ? ok(info)
        : ({
            ok: false,
            error: { code: "process_not_found", message: `no process ${pid}` },
          } as ToolResult<never>);
    },
    output: async (_pid, q) => {
      calls.push(`output ${q.since} ${q.waitMs}`);
      advance();
      if (output.length === q.since && info.running && q.waitMs > 0) {
        // Wait in the "pod" until something comes or the wait is over.
        const until = Date.now() + q.waitMs;
        while (Date.now() < until && output.length === q.since && info.running) {
          await vi.advanceTimersByTimeAsync(Math.min(50, until - Date.now()));
          advance();
        }
      }
      const data = output.subarray(q.since, q.since + q.maxBytes);
      return ok({
        offset: q.since,
        next: q.since + data.length,
        dropped: 0,
        data: btoa(String.fromCharCode(...data)),
        eof: !info.running && q.since + data.length === output.length,
      });
    },
    stdin: async () => ok({ written: 0, pending: 0, stdinOpen: true }),
    signal: async (_pid, name) => {
      calls.push(`signal ${name}`);
      advance();
      return ok(info);
    },
  };
  return { backend, plan, calls };
}

const run = async (p: ReturnType<typeof scriptedProcess>, name: string, args: Record<string, unknown>) => {
  const promise = runProcessTool(name, args, p.backend, new AbortController().signal);
  // The tool's own pauses between reads run on the fake clock.
  for (let i = 0; i < 400; i++) await vi.advanceTimersByTimeAsync(50);
  return promise;
};

describe("process tools", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a read with a wait returns everything that arrived within it, and where to go on from", async () => {
    const p = scriptedProcess();
    p.plan.push({ atMs: 100, text: "a\n" }, { atMs: 400, text: "b\n" }, { atMs: 5_000, text: "late\n" });
    const r = await run(p, "read_process_output", { pid: 7, since: 0, yield_time_ms: 1_000 });
    expect(r.ok && r.value.structured).toMatchObject({
      pid: 7,
      running: true,
      output: "a\nb\n",
      offset: 0,
      next_offset: 4,
      output_bytes: 4,
      truncated: false,
    });
    expect(r.ok && r.value.text).toBe("process 7: running\nnext_offset: 4\noutput:\na\nb\n");
    // Reads are paced: a wait of 1 s is a handful of requests, not one per 50 ms tick.
    expect(p.calls.filter((c) => c.startsWith("output")).length).toBeLessThanOrEqual(6);
  });

  it("an exit ends the wait early; the answer says how it ended", async () => {
    const p = scriptedProcess();
    p.plan.push({ atMs: 100, text: "bye\n", exit: { exitCode: 3, signal: null } });
    const r = await run(p, "read_process_output", { pid: 7, since: 0, yield_time_ms: 30_000 });
    expect(r.ok && r.value.structured).toMatchObject({ running: false, exit_code: 3, output: "bye\n" });
    expect(r.ok && r.value.text).toMatch(/^process 7: exited with code 3\n/);
    expect(p.calls.filter((c) => c.startsWith("output"))).toHaveLength(1);
  });

  it("one answer carries at most 64 KiB; the model sees the head and tail with a notice", async () => {
    const p = scriptedProcess();
    p.plan.push({ atMs: 0, text: "x".repeat(PROCESS_TOOL_OUTPUT_BYTES + 10) });
    const r = await run(p, "read_process_output", { pid: 7, yield_time_ms: 0 });
    const out = r.ok
      ? (r.value.structured as { output: string; next_offset: number; truncated: boolean })
      : null;
    expect(out?.next_offset).toBe(PROCESS_TOOL_OUTPUT_BYTES);
    expect(out?.truncated).toBe(true);
    expect(out?.output).toMatch(/\[output truncated: the command wrote 65536 bytes; showing the first 8192/);
  });

  it("stop_process: SIGTERM, then SIGKILL when it is still running after the grace", async () => {
    const stubborn = scriptedProcess();
    stubborn.plan.push({ atMs: 2_500, text: "", exit: { exitCode: null, signal: "SIGKILL" } });
    const r = await run(stubborn, "stop_process", { pid: 7 });
    expect(stubborn.calls.filter((c) => c.startsWith("signal"))).toEqual([
      "signal SIGTERM",
      "signal SIGKILL",
    ]);
    expect(r.ok && r.value.text).toBe("process 7: killed by SIGKILL");
    const polite = scriptedProcess();
    polite.plan.push({ atMs: 300, text: "", exit: { exitCode: 0, signal: null } });
    await run(polite, "stop_process", { pid: 7 });
    expect(polite.calls.filter((c) => c.startsWith("signal"))).toEqual(["signal SIGTERM"]);
    const named = scriptedProcess();
    await run(named, "stop_process", { pid: 7, signal: "SIGINT" });
    expect(named.calls.filter((c) => c.startsWith("signal"))).toEqual(["signal SIGINT"]);
  });

  it("a bad pid is the backend's failure with its code, for the model to read", async () => {
    const p = scriptedProcess();
    const r = await run(p, "write_process_stdin", { pid: 8, chars: "x" });
    expect(r).toMatchObject({ ok: false, error: { code: "process_not_found" } });
  });

  it("arguments are checked before anything runs: a signal outside the allow-list, a bad cwd, a huge wait", () => {
    expect(parseToolArgs(stopProcess, { pid: 7, signal: "SIGSEGV" }).ok).toBe(false);
    expect(parseToolArgs(startProcess, { command: "x", cwd: "/etc" }).ok).toBe(false);
    expect(parseToolArgs(startProcess, { command: "x", yield_time_ms: 60_000 }).ok).toBe(false);
    expect(parseToolArgs(startProcess, { command: " " }).ok).toBe(false);
    expect(parseToolArgs(startProcess, { command: "npm run dev", cwd: "app", tty: true }).ok).toBe(true);
  });
});
