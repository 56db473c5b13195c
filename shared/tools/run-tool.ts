import type { z } from "zod";
import type { ExecOutcome } from "../api.ts";
import { AppError, err, ok, type Result } from "../errors.ts";
import {
  type EditFileOutput,
  editFile,
  type ListFilesOutput,
  listFiles,
  type ReadFileOutput,
  type RunInSandboxOutput,
  readFile,
  runInSandbox,
  type ToolDefinition,
  type WriteFileOutput,
  writeFile,
} from "./definitions.ts";
import { applyEdit, FILE_CAPS, isBinary, numberedLines } from "./file-text.ts";
import { workspaceAbsolute, workspaceRelative } from "./paths.ts";
import { truncateForModel } from "./truncate.ts";

/** Per-stream cap of command output shown to a model: head + tail, the rest replaced by a notice. */
export const EXEC_CAPS = { headBytes: 8 * 1024, tailBytes: 8 * 1024 } as const;

/** Largest file read_file and edit_file load whole; bigger ones are refused with their size. */
export const READ_MAX_BYTES = 8 * 1024 * 1024;

export interface ListedFile {
  /** Relative to the listed directory. */
  path: string;
  type: "file" | "dir" | "symlink";
  size: number;
}

/**
 * Where a tool call runs: the chat loop implements this over its lease/sandbox and the agent's
 * executor and files; the MCP server over the edge's own public routes. Paths are relative to
 * /workspace ("" is the workspace); the backend (the pod, in the end) confines them.
 */
export interface ToolBackend {
  exec(
    call: { command: string; timeoutSeconds: number },
    signal: AbortSignal,
  ): Promise<ToolResult<ExecOutcome>>;
  /** `bytes` is absent when the file is larger than `maxBytes` (its size is still known). */
  read(
    path: string,
    opts: { maxBytes: number; signal: AbortSignal },
  ): Promise<ToolResult<{ kind: "file"; size: number; bytes?: Uint8Array } | { kind: "dir" }>>;
  write(path: string, bytes: Uint8Array, signal: AbortSignal): Promise<ToolResult<{ size: number }>>;
  list(
    path: string,
    opts: { recursive: boolean; limit: number; signal: AbortSignal },
  ): Promise<ToolResult<{ entries: ListedFile[]; truncated: boolean }>>;
}

/**
 * Why a tool call failed. `code` is a stable code of the error table (AppError satisfies this);
 * a string rather than ErrorCode because a backend passes on whatever code its route answered.
 */
export interface ToolFailure {
  code: string;
  message: string;
  requestId?: string | undefined;
}

export type ToolResult<T> = Result<T, ToolFailure>;

/** A tool's successful answer: structured (MCP structuredContent) and as text for the model. */
export interface ToolAnswer<O = unknown> {
  structured: O;
  text: string;
}

/** The codes a model can do something about: they go back to it as a tool error; others end a chat turn. */
export const MODEL_FIXABLE_CODES: ReadonlySet<string> = new Set([
  "invalid_request",
  "payload_too_large",
  "invalid_path",
  "file_not_found",
  "edit_not_found",
  "edit_not_unique",
  "edit_no_change",
  // The process tools: a wrong or finished pid, a full table, a command that would not start.
  "process_not_found",
  "process_exited",
  "stdin_closed",
  "not_a_tty",
  "spawn_failed",
  "process_limit",
  "ring_limit",
  // open_port_link: the exec server's own port, or too many open links.
  "port_not_allowed",
  "link_limit",
]);

const answer = <O extends z.ZodObject>(
  tool: ToolDefinition<z.ZodObject, O>,
  out: z.infer<O>,
): ToolAnswer<z.infer<O>> => ({
  structured: out,
  text: tool.render(out),
});

export function execAnswer(outcome: ExecOutcome): ToolAnswer<z.infer<typeof RunInSandboxOutput>> {
  const stdout = truncateForModel(outcome.stdout, { totalBytes: outcome.stdoutBytes, ...EXEC_CAPS });
  const stderr = truncateForModel(outcome.stderr, { totalBytes: outcome.stderrBytes, ...EXEC_CAPS });
  return answer(runInSandbox, {
    exit_code: outcome.exitCode,
    signal: outcome.signal,
    timed_out: outcome.timedOut,
    duration_ms: outcome.durationMs,
    stdout: stdout.text,
    stderr: stderr.text,
    stdout_bytes: outcome.stdoutBytes,
    stderr_bytes: outcome.stderrBytes,
    truncated: outcome.truncated || stdout.truncated || stderr.truncated,
  });
}

export async function runReadFile(
  args: z.infer<typeof readFile.input>,
  backend: ToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer<z.infer<typeof ReadFileOutput>>>> {
  const path = workspaceAbsolute(args.path);
  const got = await backend.read(workspaceRelative(args.path), { maxBytes: READ_MAX_BYTES, signal });
  if (!got.ok) return got;
  if (got.value.kind === "dir") {
    return err(new AppError("invalid_request", `${path} is a directory; use list_files`));
  }
  const { size, bytes } = got.value;
  if (!bytes) {
    return err(
      new AppError(
        "payload_too_large",
        `${path} is ${size} bytes, more than read_file loads (${READ_MAX_BYTES}); use run_in_sandbox with head, tail or grep`,
      ),
    );
  }
  if (isBinary(bytes)) {
    return ok(
      answer(readFile, {
        path,
        size,
        binary: true,
        content: "",
        start_line: 0,
        end_line: 0,
        total_lines: 0,
        truncated: false,
      }),
    );
  }
  const text = numberedLines(
    new TextDecoder().decode(bytes),
    args.offset ?? 1,
    args.limit ?? FILE_CAPS.readLines,
  );
  return ok(
    answer(readFile, {
      path,
      size,
      binary: false,
      content: text.content,
      start_line: text.startLine,
      end_line: text.endLine,
      total_lines: text.totalLines,
      truncated: text.truncated,
      ...(text.notice ? { notice: text.notice } : {}),
    }),
  );
}

export async function runWriteFile(
  args: z.infer<typeof writeFile.input>,
  backend: ToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer<z.infer<typeof WriteFileOutput>>>> {
  const wrote = await backend.write(
    workspaceRelative(args.path),
    new TextEncoder().encode(args.content),
    signal,
  );
  if (!wrote.ok) return wrote;
  return ok(answer(writeFile, { path: workspaceAbsolute(args.path), bytes_written: wrote.value.size }));
}

export async function runEditFile(
  args: z.infer<typeof editFile.input>,
  backend: ToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer<z.infer<typeof EditFileOutput>>>> {
  const path = workspaceAbsolute(args.path);
  const rel = workspaceRelative(args.path);
  const got = await backend.read(rel, { maxBytes: FILE_CAPS.editBytes, signal });
  if (!got.ok) return got;
  if (got.value.kind === "dir") return err(new AppError("invalid_request", `${path} is a directory`));
  const { bytes, size } = got.value;
  if (!bytes) {
    return err(
      new AppError(
        "payload_too_large",
        `${path} is ${size} bytes; edit_file edits files up to ${FILE_CAPS.editBytes}`,
      ),
    );
  }
  if (isBinary(bytes))
    return err(new AppError("invalid_request", `${path} is a binary file; edit_file edits text`));
  const edited = applyEdit(new TextDecoder().decode(bytes), {
    oldString: args.old_string,
    newString: args.new_string,
    replaceAll: args.replace_all ?? false,
  });
  if (!edited.ok) return err(new AppError(edited.error.code, `${path}: ${edited.error.message}`));
  const wrote = await backend.write(rel, new TextEncoder().encode(edited.value.text), signal);
  if (!wrote.ok) return wrote;
  return ok(
    answer(editFile, { path, replacements: edited.value.replacements, bytes_written: wrote.value.size }),
  );
}

export async function runListFiles(
  args: z.infer<typeof listFiles.input>,
  backend: ToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer<z.infer<typeof ListFilesOutput>>>> {
  const listed = await backend.list(workspaceRelative(args.path ?? ""), {
    recursive: args.recursive ?? false,
    limit: FILE_CAPS.listEntries,
    signal,
  });
  if (!listed.ok) return listed;
  const entries = [...listed.value.entries].sort((a, b) => a.path.localeCompare(b.path));
  const cut = entries.length > FILE_CAPS.listEntries;
  return ok(
    answer(listFiles, {
      path: workspaceAbsolute(args.path ?? ""),
      entries: entries.slice(0, FILE_CAPS.listEntries),
      truncated: listed.value.truncated || cut,
    }),
  );
}

/** Runs one of the chat tools (validated arguments) against `backend`. */
export async function runSandboxTool(
  name: string,
  args: Record<string, unknown>,
  backend: ToolBackend,
  opts: { defaultTimeoutSeconds: number; signal: AbortSignal },
): Promise<ToolResult<ToolAnswer>> {
  const { signal } = opts;
  switch (name) {
    case runInSandbox.name: {
      const a = args as z.infer<typeof runInSandbox.input>;
      const ran = await backend.exec(
        { command: a.command, timeoutSeconds: a.timeout_seconds ?? opts.defaultTimeoutSeconds },
        signal,
      );
      return ran.ok ? ok(execAnswer(ran.value)) : ran;
    }
    case readFile.name:
      return runReadFile(args as z.infer<typeof readFile.input>, backend, signal);
    case writeFile.name:
      return runWriteFile(args as z.infer<typeof writeFile.input>, backend, signal);
    case editFile.name:
      return runEditFile(args as z.infer<typeof editFile.input>, backend, signal);
    case listFiles.name:
      return runListFiles(args as z.infer<typeof listFiles.input>, backend, signal);
    default:
      return err(new AppError("invalid_request", `there is no tool named "${name}"`));
  }
}
