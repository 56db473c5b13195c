import { z } from "zod";
import {
  PROCESS_LIMITS,
  type ProcessInfo,
  type ProcessOutput,
  type ProcessStartRequest,
  type StdinResult,
} from "../api.ts";
import { ok } from "../errors.ts";
import { PROCESS_SIGNALS } from "../process-signals.ts";
import { CommandArg, type ToolDefinition } from "./definitions.ts";
import { ToolPathSchema, workspaceAbsolute } from "./paths.ts";
import type { ToolAnswer, ToolResult } from "./run-tool.ts";
import { truncateForModel } from "./truncate.ts";

/*
 * The process tools (issue 27 item 4): start a long-lived process in the sandbox, read its new
 * output with a wait (the Agents SDK's `yield_time_ms`: what arrived within the wait, plus the
 * offset to go on from), write to its stdin, stop it, list them. One definition and one
 * implementation for the chat loop (cluster-agent/chat, on the request's pod) and the MCP server
 * (edge/mcp, through the public routes); each supplies a ProcessToolBackend.
 */

const define = <I extends z.ZodObject, O extends z.ZodObject>(d: ToolDefinition<I, O>) => d;
const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** Output bytes one tool answer carries at most; the rest is read on from `next_offset`. */
export const PROCESS_TOOL_OUTPUT_BYTES = 64 * 1024;
/** Head and tail of that shown to the model as text (the notice names what was left out). */
const SHOW = { headBytes: 8 * 1024, tailBytes: 8 * 1024 } as const;
/** Reads within one wait are at least this far apart (see collectOutput). */
const READ_PACE_MS = 200;
/** `stop_process` without a signal: SIGTERM, and SIGKILL when it has not exited after this. */
const STOP_GRACE_MS = 2_000;

const pid = z.number().int().min(1).max(9_999_999).describe("The process id from start_process.");
const yieldTime = (dflt: number) =>
  z
    .number()
    .int()
    .min(0)
    .max(PROCESS_LIMITS.maxWaitMs)
    .optional()
    .describe(
      `How long to wait (ms) for output before answering (default ${dflt}, at most ${PROCESS_LIMITS.maxWaitMs}); ` +
        "it answers earlier when the process exits.",
    );

export const ProcessStateOutput = z.object({
  pid: z.number().int(),
  running: z.boolean(),
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  timed_out: z.boolean(),
});

export const ProcessOutputAnswer = ProcessStateOutput.extend({
  output: z
    .string()
    .describe("The output bytes read (stdout and stderr interleaved) as text, capped for the model"),
  offset: z.number().int().nonnegative().describe("Where `output` starts in the process's whole output"),
  next_offset: z.number().int().nonnegative().describe("Pass as `since` to read on without repeating a byte"),
  dropped: z
    .number()
    .int()
    .nonnegative()
    .describe("Bytes that had left the sandbox's buffer before they were read"),
  output_bytes: z.number().int().nonnegative().describe("Bytes of output read by this call"),
  truncated: z.boolean(),
});
export type ProcessOutputAnswer = z.infer<typeof ProcessOutputAnswer>;

function stateLine(o: z.infer<typeof ProcessStateOutput>): string {
  if (o.running) return `process ${o.pid}: running`;
  if (o.timed_out) return `process ${o.pid}: timed out and was killed`;
  if (o.exit_code !== null) return `process ${o.pid}: exited with code ${o.exit_code}`;
  return `process ${o.pid}: killed by ${o.signal ?? "a signal"}`;
}

function renderOutput(o: ProcessOutputAnswer): string {
  const lines = [stateLine(o)];
  if (o.dropped > 0) lines.push(`[${o.dropped} bytes of output were lost before this read: it fell behind]`);
  lines.push(`next_offset: ${o.next_offset}`);
  lines.push(o.output_bytes === 0 ? "output: (none new)" : `output:\n${o.output}`);
  return lines.join("\n");
}

export const startProcess = define({
  name: "start_process",
  description:
    "Start a long-running or interactive command (/bin/sh -c) in the sandbox and keep it running: a server, " +
    "a watcher, a REPL. Returns its pid and the output it printed within yield_time_ms. Read more with " +
    "read_process_output, type into it with write_process_stdin, stop it with stop_process. For a command " +
    "that simply finishes, use run_in_sandbox.",
  input: z.object({
    command: CommandArg.describe("The shell command to start."),
    cwd: ToolPathSchema.optional().describe(
      "Working directory, relative to /workspace (default /workspace).",
    ),
    tty: z
      .boolean()
      .optional()
      .describe(
        "Run it on a terminal (for REPLs and programs that want one; output then has CRLF and echo).",
      ),
    timeout_seconds: z
      .number()
      .int()
      .min(0)
      .max(PROCESS_LIMITS.maxTimeoutSeconds)
      .optional()
      .describe("Kill it after this many seconds (default 0: it runs until stopped or the sandbox ends)."),
    yield_time_ms: yieldTime(1000),
  }),
  output: ProcessOutputAnswer,
  render: renderOutput,
});

export const readProcessOutput = define({
  name: "read_process_output",
  description:
    "Read a process's output from byte offset `since` (use the next_offset of the previous answer; 0 = from " +
    "the start), waiting up to yield_time_ms for more. Returns what arrived, whether it still runs, and next_offset.",
  input: z.object({
    pid,
    since: z.number().int().min(0).optional().describe("Byte offset to read from (default 0)."),
    yield_time_ms: yieldTime(1000),
  }),
  output: ProcessOutputAnswer,
  render: renderOutput,
});

export const writeProcessStdin = define({
  name: "write_process_stdin",
  description:
    "Type text into a running process's stdin (include \\n to press Enter; \\u0003 is Ctrl-C on a tty process), " +
    "then return the output that followed within yield_time_ms. close_stdin sends end-of-file after the text.",
  input: z.object({
    pid,
    chars: z
      .string()
      .refine(
        (s) => utf8Bytes(s) <= PROCESS_LIMITS.stdinBytes,
        `chars is longer than ${PROCESS_LIMITS.stdinBytes} bytes`,
      )
      .describe("The text to write (may be empty, e.g. to only close stdin)."),
    close_stdin: z.boolean().optional().describe("Close stdin after the text (default false)."),
    yield_time_ms: yieldTime(500),
  }),
  output: ProcessOutputAnswer,
  render: renderOutput,
});

export const stopProcess = define({
  name: "stop_process",
  description:
    "Stop a process and every child it started (its process group). Without a signal: SIGTERM, then SIGKILL " +
    "if it is still running 2 s later. With one: just that signal (e.g. SIGINT, SIGHUP).",
  input: z.object({
    pid,
    signal: z.enum(PROCESS_SIGNALS).optional().describe("The signal to send instead."),
  }),
  output: ProcessStateOutput,
  render: (o) => stateLine(o),
});

export const ListedProcess = ProcessStateOutput.extend({
  command: z.string(),
  tty: z.boolean(),
  started_at: z.string(),
  output_bytes: z
    .number()
    .int()
    .nonnegative()
    .describe("Total output so far: read on from any offset below it"),
});

export const ListProcessesOutput = z.object({ processes: z.array(ListedProcess) });

export const listProcesses = define({
  name: "list_processes",
  description: "List the sandbox's processes: running ones, then recently exited ones with how they ended.",
  input: z.object({}),
  output: ListProcessesOutput,
  render(o) {
    if (o.processes.length === 0) return "no processes";
    return o.processes
      .map((p) => `${stateLine(p)}\t${p.output_bytes} bytes of output\t${p.command}`)
      .join("\n");
  },
});

/** The process tools, in the order they are offered. */
export const PROCESS_TOOLS = [
  startProcess,
  readProcessOutput,
  writeProcessStdin,
  stopProcess,
  listProcesses,
] as const;
export const PROCESS_TOOL_NAMES: ReadonlySet<string> = new Set(PROCESS_TOOLS.map((t) => t.name));

/**
 * Where a process tool call runs: one sandbox's processes (the chat request's pod through the
 * pipeline, or the MCP caller's sandbox through the public routes). Failures carry the API's codes
 * (`process_not_found`, `process_exited`, …).
 */
export interface ProcessToolBackend {
  start(body: ProcessStartRequest, signal: AbortSignal): Promise<ToolResult<ProcessInfo>>;
  list(signal: AbortSignal): Promise<ToolResult<ProcessInfo[]>>;
  get(pid: number, signal: AbortSignal): Promise<ToolResult<ProcessInfo>>;
  output(
    pid: number,
    q: { since: number; maxBytes: number; waitMs: number },
    signal: AbortSignal,
  ): Promise<ToolResult<ProcessOutput>>;
  stdin(pid: number, bytes: Uint8Array, eof: boolean, signal: AbortSignal): Promise<ToolResult<StdinResult>>;
  signal(
    pid: number,
    name: (typeof PROCESS_SIGNALS)[number],
    signal: AbortSignal,
  ): Promise<ToolResult<ProcessInfo>>;
}

const state = (p: ProcessInfo): z.infer<typeof ProcessStateOutput> => ({
  pid: p.pid,
  running: p.running,
  exit_code: p.exitCode,
  signal: p.signal,
  timed_out: p.timedOut,
});

const decodeBase64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/**
 * Output from `since` until `waitMs` has passed, the process has exited and everything was read, or
 * PROCESS_TOOL_OUTPUT_BYTES were collected. Each read waits (in the pod) only while there is
 * nothing new, so bytes that come in bursts within the wait all arrive in one answer.
 */
export async function collectOutput(
  backend: ProcessToolBackend,
  pid: number,
  since: number,
  waitMs: number,
  signal: AbortSignal,
): Promise<ToolResult<ProcessOutputAnswer>> {
  const deadline = Date.now() + waitMs;
  const parts: Uint8Array[] = [];
  let bytes = 0;
  let offset: number | undefined;
  let at = since;
  let dropped = 0;
  for (;;) {
    const left = Math.max(0, deadline - Date.now());
    const r = await backend.output(
      pid,
      { since: at, maxBytes: PROCESS_TOOL_OUTPUT_BYTES - bytes, waitMs: left },
      signal,
    );
    if (!r.ok) return r;
    const data = decodeBase64(r.value.data);
    offset ??= r.value.offset;
    dropped += r.value.dropped;
    if (data.length > 0) parts.push(data);
    bytes += data.length;
    at = r.value.next;
    if (r.value.eof || bytes >= PROCESS_TOOL_OUTPUT_BYTES || left === 0) break;
    // A process that prints a little at a time would otherwise cost one read (one request, one quota
    // token through MCP) per line: gather for a moment before the next read.
    const pause = Math.min(READ_PACE_MS, deadline - Date.now());
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
  }
  const info = await backend.get(pid, signal);
  if (!info.ok) return info;
  const all = new Uint8Array(bytes);
  let i = 0;
  for (const p of parts) {
    all.set(p, i);
    i += p.length;
  }
  const shown = truncateForModel(new TextDecoder().decode(all), { totalBytes: bytes, ...SHOW });
  return ok({
    ...state(info.value),
    output: shown.text,
    offset: offset ?? since,
    next_offset: at,
    dropped,
    output_bytes: bytes,
    // More was there than one answer carries: read on from next_offset.
    truncated: shown.truncated || at < info.value.outputBytes,
  });
}

const answer = <O extends z.ZodObject>(
  tool: ToolDefinition<z.ZodObject, O>,
  out: z.infer<O>,
): ToolAnswer => ({
  structured: out,
  text: tool.render(out),
});

/** Runs one process tool (validated arguments) against `backend`. */
export async function runProcessTool(
  name: string,
  args: Record<string, unknown>,
  backend: ProcessToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer>> {
  switch (name) {
    case startProcess.name: {
      const a = args as z.infer<typeof startProcess.input>;
      const started = await backend.start(
        {
          command: a.command,
          ...(a.cwd !== undefined ? { cwd: workspaceAbsolute(a.cwd) } : {}),
          ...(a.tty ? { tty: true } : {}),
          ...(a.timeout_seconds !== undefined ? { timeoutSeconds: a.timeout_seconds } : {}),
        },
        signal,
      );
      if (!started.ok) return started;
      const read = await collectOutput(backend, started.value.pid, 0, a.yield_time_ms ?? 1000, signal);
      return read.ok ? ok(answer(startProcess, read.value)) : read;
    }
    case readProcessOutput.name: {
      const a = args as z.infer<typeof readProcessOutput.input>;
      const read = await collectOutput(backend, a.pid, a.since ?? 0, a.yield_time_ms ?? 1000, signal);
      return read.ok ? ok(answer(readProcessOutput, read.value)) : read;
    }
    case writeProcessStdin.name: {
      const a = args as z.infer<typeof writeProcessStdin.input>;
      // The answer is what the process printed after this input: from the output's end before it.
      const before = await backend.get(a.pid, signal);
      if (!before.ok) return before;
      const wrote = await backend.stdin(
        a.pid,
        new TextEncoder().encode(a.chars),
        a.close_stdin === true,
        signal,
      );
      if (!wrote.ok) return wrote;
      const read = await collectOutput(
        backend,
        a.pid,
        before.value.outputBytes,
        a.yield_time_ms ?? 500,
        signal,
      );
      return read.ok ? ok(answer(writeProcessStdin, read.value)) : read;
    }
    case stopProcess.name: {
      const a = args as z.infer<typeof stopProcess.input>;
      const sent = await backend.signal(a.pid, a.signal ?? "SIGTERM", signal);
      if (!sent.ok) return sent;
      if (a.signal !== undefined || !sent.value.running) return ok(answer(stopProcess, state(sent.value)));
      // Wait for the exit (its output's end comes with it), then SIGKILL what is left.
      const waited = await collectOutput(backend, a.pid, sent.value.outputBytes, STOP_GRACE_MS, signal);
      if (!waited.ok) return waited;
      if (!waited.value.running) {
        const { pid: p, running, exit_code, signal: s, timed_out } = waited.value;
        return ok(answer(stopProcess, { pid: p, running, exit_code, signal: s, timed_out }));
      }
      const killed = await backend.signal(a.pid, "SIGKILL", signal);
      if (!killed.ok) return killed;
      const after = await collectOutput(backend, a.pid, killed.value.outputBytes, STOP_GRACE_MS, signal);
      if (!after.ok) return after;
      const { pid: p, running, exit_code, signal: s, timed_out } = after.value;
      return ok(answer(stopProcess, { pid: p, running, exit_code, signal: s, timed_out }));
    }
    case listProcesses.name: {
      const listed = await backend.list(signal);
      if (!listed.ok) return listed;
      return ok(
        answer(listProcesses, {
          processes: listed.value.map((p) => ({
            ...state(p),
            command: p.command ?? (p.argv ?? []).join(" "),
            tty: p.tty,
            started_at: p.startedAt,
            output_bytes: p.outputBytes,
          })),
        }),
      );
    }
    default:
      return { ok: false, error: { code: "invalid_request", message: `there is no tool named "${name}"` } };
  }
}
