import type { ChatCompletionFunctionTool } from "openai/resources/chat/completions";
import { ok } from "../../shared/errors.ts";
import {
  CHAT_TOOLS,
  inputJsonSchema,
  parseToolArgs,
  runInSandbox,
  type ToolDefinition,
} from "../../shared/tools/definitions.ts";
import { getNetwork, type NetworkView, NO_NETWORK } from "../../shared/tools/network-tool.ts";
import { workspaceAbsolute } from "../../shared/tools/paths.ts";
import { openPortLink } from "../../shared/tools/port-link-tools.ts";
import {
  PROCESS_TOOL_NAMES,
  PROCESS_TOOLS,
  type ProcessToolBackend,
  runProcessTool,
} from "../../shared/tools/process-tools.ts";
import {
  runSandboxTool,
  type ToolAnswer,
  type ToolBackend,
  type ToolResult,
} from "../../shared/tools/run-tool.ts";
import { commandPreview, type LeasedSandbox } from "../requests/leased-sandbox.ts";
import { runInSandboxTool } from "./run-in-sandbox-tool.ts";

/** The file tools a chat model gets when the agent has sandbox files (everything but run_in_sandbox). */
// Widened to the common shape: each call site parses with the definition it looked up by name.
const FILE_TOOLS = CHAT_TOOLS.filter(
  (t) => t.name !== runInSandbox.name,
) as unknown as readonly ToolDefinition[];
export const FILE_TOOL_NAMES: ReadonlySet<string> = new Set(FILE_TOOLS.map((t) => t.name));

/** The process tools (shared/tools/process-tools.ts), widened like FILE_TOOLS. */
const CHAT_PROCESS_TOOLS = PROCESS_TOOLS as unknown as readonly ToolDefinition[];

/**
 * The tools offered to the model, from the shared definitions. run_in_sandbox keeps its chat
 * form (its timeout bound is this agent's configured maximum, its description the sandbox's network);
 * file tools only with a files port, process tools only with processes (http exec mode); get_network always.
 * open_port_link only with port links: session mode in http exec mode (a link belongs to a sandbox
 * id, and a request-mode pod has none).
 */
export function chatToolSpecs(
  maxTimeoutSeconds: number,
  withFiles: boolean,
  withProcesses = false,
  network: NetworkView = NO_NETWORK,
  withPortLink = false,
): ChatCompletionFunctionTool[] {
  const specs = [runInSandboxTool(maxTimeoutSeconds, network)];
  const offered = [
    ...(withFiles ? FILE_TOOLS : []),
    ...(withProcesses ? CHAT_PROCESS_TOOLS : []),
    getNetwork as unknown as ToolDefinition,
    ...(withPortLink ? [openPortLink as unknown as ToolDefinition] : []),
  ];
  for (const t of offered) {
    specs.push({
      type: "function",
      function: { name: t.name, description: t.description, parameters: inputJsonSchema(t.input) },
    });
  }
  return specs;
}

/**
 * How a file or process tool call appears in events and records (the dashboard timeline shows it
 * as a command): `<tool> <path>`, `start_process <command>`, `<tool> <pid>`.
 */
export function fileToolLabel(name: string, args: Record<string, unknown>): string {
  if (typeof args.command === "string") return `${name} ${commandPreview(args.command)}`;
  if (typeof args.pid === "number") return `${name} ${args.pid}`;
  if (PROCESS_TOOL_NAMES.has(name)) return name;
  const path = typeof args.path === "string" ? workspaceAbsolute(args.path) : "/workspace";
  return `${name} ${path}`;
}

/** Bytes of a stream, stopping (and cancelling it) once more than `maxBytes` arrived. */
async function readCapped(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The file operations of the shared tools on the chat request's pod, through the pipeline (the
 * lease's signal and fence handling apply to them as to commands).
 */
function leaseFilesBackend(sandbox: LeasedSandbox, maxWriteBytes: number): ToolBackend {
  // Relative to the workspace ("." is the workspace): the pod's workspace need not be mounted at /workspace.
  const abs = (rel: string) => (rel === "" ? "." : rel);
  return {
    exec: async () => ({
      ok: false,
      error: { code: "internal", message: "run_in_sandbox is run by the chat loop" },
    }),
    async read(rel, { maxBytes, signal }) {
      const got = await sandbox.readFile(abs(rel), { signal });
      if (!got.ok) return got;
      if (got.value.kind === "dir") return ok({ kind: "dir" as const });
      const { size, body } = got.value;
      if (size > maxBytes) {
        await body.cancel().catch(() => undefined);
        return ok({ kind: "file" as const, size });
      }
      const bytes = await readCapped(body, maxBytes);
      return ok(
        bytes ? { kind: "file" as const, size: bytes.length, bytes } : { kind: "file" as const, size },
      );
    },
    async write(rel, bytes, signal) {
      const wrote = await sandbox.writeFile(abs(rel), bytes, { signal, maxBytes: maxWriteBytes });
      return wrote.ok ? ok({ size: wrote.value.size }) : wrote;
    },
    async list(rel, { recursive, limit, signal }) {
      const got = await sandbox.listFiles(abs(rel), { signal, recursive, limit });
      if (!got.ok) return got;
      return ok({
        entries: got.value.entries.map((e) => ({ path: e.name, type: e.type, size: e.size })),
        truncated: got.value.truncated,
      });
    },
  };
}

/** The process tools on the chat request's pod, through the pipeline (its signals and fence apply). */
function leaseProcessesBackend(
  sandbox: LeasedSandbox,
  /** Under the process's own env (the egress proxy's variables in request mode). */
  env?: Readonly<Record<string, string>>,
): ProcessToolBackend {
  return {
    start: (body, signal) =>
      sandbox.startProcess(env ? { ...body, env: { ...env, ...(body.env ?? {}) } } : body, signal),
    list: (signal) => sandbox.onProcesses((p, t, s) => p.list(t, { signal: s }), signal),
    get: (pid, signal) => sandbox.onProcesses((p, t, s) => p.get(t, pid, { signal: s }), signal),
    output: (pid, q, signal) => sandbox.onProcesses((p, t, s) => p.output(t, pid, q, { signal: s }), signal),
    stdin: (pid, bytes, eof, signal) =>
      sandbox.onProcesses((p, t, s) => p.stdin(t, pid, bytes, eof, { signal: s }), signal),
    signal: (pid, name, signal) =>
      sandbox.onProcesses((p, t, s) => p.signal(t, pid, name, { signal: s }), signal),
  };
}

export type FileToolOutcome =
  | { kind: "bad_args"; text: string }
  | { kind: "ran"; label: string; result: ToolResult<ToolAnswer> };

/**
 * Runs one file or process tool call of the model on the request's leased pod (`sandbox` takes it
 * on first use).
 */
export async function runFileTool(
  name: string,
  rawArgs: string,
  deps: {
    sandbox: (label: string) => Promise<ToolResult<LeasedSandbox>>;
    maxWriteBytes: number;
    signal: AbortSignal;
    /** Under a started process's env (request mode: the egress proxy's variables). */
    env?: Readonly<Record<string, string>>;
  },
): Promise<FileToolOutcome> {
  const tool = [...FILE_TOOLS, ...CHAT_PROCESS_TOOLS].find((t) => t.name === name)!;
  const args = parseToolArgs(tool, rawArgs);
  if (!args.ok) {
    return {
      kind: "bad_args",
      text: `error: invalid arguments for ${name}: ${args.error}. Nothing was done.`,
    };
  }
  const values = args.value as Record<string, unknown>;
  const label = fileToolLabel(name, values);
  const sandbox = await deps.sandbox(label);
  if (!sandbox.ok) return { kind: "ran", label, result: sandbox };
  const result = PROCESS_TOOL_NAMES.has(name)
    ? await runProcessTool(name, values, leaseProcessesBackend(sandbox.value, deps.env), deps.signal)
    : await runSandboxTool(name, values, leaseFilesBackend(sandbox.value, deps.maxWriteBytes), {
        defaultTimeoutSeconds: 0,
        signal: deps.signal,
      });
  return { kind: "ran", label, result };
}
