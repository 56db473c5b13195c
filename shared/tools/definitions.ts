import { z } from "zod";
import { LIMITS } from "../api.ts";
import { fieldIssues } from "../field-hints.ts";
import { ToolPathSchema } from "./paths.ts";

/*
 * One definition per tool, shared by the chat loop (cluster-agent/chat) and the MCP server
 * (edge/mcp): the name, the description the model reads, the input schema (validated with zod,
 * offered as JSON Schema), the output schema (MCP structuredContent) and the text rendering the
 * model reads. Where a tool runs is the caller's business; what it means is decided here.
 */

export interface ToolDefinition<I extends z.ZodObject = z.ZodObject, O extends z.ZodObject = z.ZodObject> {
  name: string;
  description: string;
  input: I;
  output: O;
  /** The text a model reads for a successful result (MCP `content`, the chat tool message). */
  render(out: z.infer<O>): string;
}

const define = <I extends z.ZodObject, O extends z.ZodObject>(d: ToolDefinition<I, O>) => d;

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** A shell command line a model gives (run_in_sandbox, start_process). */
export const CommandArg = z
  .string()
  .refine((c) => c.trim() !== "", "command must not be empty")
  .refine((c) => utf8Bytes(c) <= LIMITS.commandBytes, `command is longer than ${LIMITS.commandBytes} bytes`);

// ---------- run_in_sandbox ----------

export const RunInSandboxOutput = z.object({
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  timed_out: z.boolean(),
  duration_ms: z.number().nonnegative(),
  stdout: z.string().describe("Capped for the model: head and tail with a notice naming the true size"),
  stderr: z.string().describe("Capped like stdout"),
  stdout_bytes: z.number().int().nonnegative().describe("What the command really wrote"),
  stderr_bytes: z.number().int().nonnegative(),
  truncated: z.boolean(),
});

export const runInSandbox = define({
  name: "run_in_sandbox",
  description:
    "Run a shell command (/bin/sh -c) in the isolated sandbox and get its exit code, stdout and stderr. " +
    "The working directory is /workspace. The network reaches only what the sandbox's policy allows " +
    "(get_network reads it; without a sandbox there is none). Prefer read_file, write_file and edit_file " +
    "for files: no quoting, and binary-safe.",
  input: z.object({
    command: CommandArg.describe("The shell command to run."),
    timeout_seconds: z
      .number()
      .int()
      .min(1)
      .max(LIMITS.maxTimeoutSeconds)
      .optional()
      .describe(`Kill the command after this many seconds (default ${LIMITS.defaultTimeoutSeconds}).`),
  }),
  output: RunInSandboxOutput,
  render(o) {
    const lines: string[] = [];
    lines.push(
      o.exit_code !== null
        ? `exit_code: ${o.exit_code}`
        : `exit_code: none (killed${o.signal ? ` by ${o.signal}` : ""})`,
    );
    if (o.timed_out) lines.push("timed_out: true");
    lines.push(`duration_ms: ${Math.round(o.duration_ms)}`);
    lines.push(o.stdout_bytes === 0 ? "stdout: (empty)" : `stdout:\n${o.stdout}`);
    lines.push(o.stderr_bytes === 0 ? "stderr: (empty)" : `stderr:\n${o.stderr}`);
    return lines.join("\n");
  },
});

// ---------- read_file ----------

export const ReadFileOutput = z.object({
  path: z.string(),
  size: z.number().int().nonnegative().describe("The file's true size in bytes"),
  binary: z.boolean(),
  content: z.string().describe("Line-numbered text (empty for a binary file)"),
  start_line: z.number().int(),
  end_line: z.number().int(),
  total_lines: z.number().int().nonnegative(),
  truncated: z.boolean(),
  notice: z.string().optional(),
});

export const readFile = define({
  name: "read_file",
  description:
    "Read a text file in the sandbox. Returns its lines numbered from 1 (number, tab, line). Use offset and " +
    "limit (in lines) to page through a long file. A binary file is reported as binary with its size, not shown.",
  input: z.object({
    path: ToolPathSchema.describe("Relative to /workspace, or absolute under /workspace."),
    offset: z.number().int().min(1).optional().describe("First line to return, 1-based (default 1)."),
    limit: z.number().int().min(1).max(2000).optional().describe("How many lines (default and max 2000)."),
  }),
  output: ReadFileOutput,
  render(o) {
    if (o.binary) return `${o.path}: binary file, ${o.size} bytes (not shown)`;
    if (o.total_lines === 0) return `${o.path}: empty file (${o.size} bytes)`;
    return o.notice ? `${o.content}\n${o.notice}` : o.content;
  },
});

// ---------- write_file ----------

export const WriteFileOutput = z.object({ path: z.string(), bytes_written: z.number().int().nonnegative() });

export const writeFile = define({
  name: "write_file",
  description:
    "Create or overwrite a file in the sandbox with the given UTF-8 text. Parent directories are created. " +
    "To change part of an existing file, prefer edit_file.",
  input: z.object({
    path: ToolPathSchema.describe("Relative to /workspace, or absolute under /workspace."),
    content: z.string().describe("The whole new content of the file."),
  }),
  output: WriteFileOutput,
  render: (o) => `wrote ${o.bytes_written} bytes to ${o.path}`,
});

// ---------- edit_file ----------

export const EditFileOutput = z.object({
  path: z.string(),
  replacements: z.number().int().positive(),
  bytes_written: z.number().int().nonnegative(),
});

export const editFile = define({
  name: "edit_file",
  description:
    "Replace old_string by new_string in a file. old_string must match the file exactly (whitespace " +
    "included) and occur exactly once, unless replace_all is true. It fails, changing nothing, when " +
    "old_string is missing or not unique: then read the file and give more surrounding context.",
  input: z.object({
    path: ToolPathSchema.describe("Relative to /workspace, or absolute under /workspace."),
    old_string: z.string().min(1, "old_string must not be empty").describe("The exact text to replace."),
    new_string: z.string().describe("The text to put in its place."),
    replace_all: z.boolean().optional().describe("Replace every occurrence (default false)."),
  }),
  output: EditFileOutput,
  render: (o) => `edited ${o.path}: ${o.replacements} replacement(s), ${o.bytes_written} bytes written`,
});

// ---------- list_files ----------

export const ListedEntry = z.object({
  path: z.string().describe("Relative to the listed directory"),
  type: z.enum(["file", "dir", "symlink"]),
  size: z.number().int().nonnegative(),
});

export const ListFilesOutput = z.object({
  path: z.string(),
  entries: z.array(ListedEntry),
  truncated: z.boolean(),
});

export const listFiles = define({
  name: "list_files",
  description:
    "List a directory in the sandbox (default /workspace): each entry with its type and size in bytes. " +
    "recursive lists the whole tree. At most 500 entries are returned.",
  input: z.object({
    path: ToolPathSchema.optional().describe("Directory, relative to /workspace (default: /workspace)."),
    recursive: z.boolean().optional().describe("Walk subdirectories too (default false)."),
  }),
  output: ListFilesOutput,
  render(o) {
    if (o.entries.length === 0) return `${o.path}: empty directory`;
    const lines = o.entries.map((e) => (e.type === "dir" ? `${e.path}/` : `${e.path}\t${e.type}\t${e.size}`));
    if (o.truncated) lines.push(`[listing cut at ${o.entries.length} entries; list a subdirectory for more]`);
    return lines.join("\n");
  },
});

// ---------- sandboxes (MCP only: a chat session manages its own) ----------

export const CreateSandboxOutput = z.object({
  sandbox_id: z.string(),
  idle_timeout_seconds: z.number().int(),
  expires_at: z.string().optional(),
});

export const createSandbox = define({
  name: "create_sandbox",
  description:
    "Create a sandbox that keeps its files and installed tools across calls. Pass its sandbox_id to the " +
    "other tools. It is deleted after idle_timeout_seconds without use; delete it with delete_sandbox when done.",
  input: z.object({
    idle_timeout_seconds: z.number().int().min(10).max(3600).optional().describe("Default 300."),
  }),
  output: CreateSandboxOutput,
  render: (o) => `created sandbox ${o.sandbox_id} (deleted after ${o.idle_timeout_seconds} s idle)`,
});

export const DeleteSandboxOutput = z.object({ sandbox_id: z.string(), deleted: z.boolean() });

export const deleteSandbox = define({
  name: "delete_sandbox",
  description: "Delete a sandbox and its files.",
  input: z.object({ sandbox_id: z.string().min(1).max(200).describe("From create_sandbox.") }),
  output: DeleteSandboxOutput,
  render: (o) => `deleted sandbox ${o.sandbox_id}`,
});

/** The tools a chat model is offered. */
export const CHAT_TOOLS = [runInSandbox, readFile, writeFile, editFile, listFiles] as const;

/** The optional argument MCP adds to every sandbox tool: without it, a disposable pod serves the call. */
export const SandboxIdArg = z
  .string()
  .min(1)
  .max(200)
  .optional()
  .describe(
    "A sandbox from create_sandbox. Without it the call runs in a fresh pod that is discarded after.",
  );

/** JSON Schema (draft 2020-12) of a tool's input, as models and MCP clients read it. */
export function inputJsonSchema(schema: z.ZodObject): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, {
    io: "input",
    target: "draft-2020-12",
  }) as Record<string, unknown>;
  return rest;
}

export function outputJsonSchema(schema: z.ZodObject): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, {
    io: "output",
    target: "draft-2020-12",
  }) as Record<string, unknown>;
  return rest;
}

/**
 * Parse a model's raw argument string. A failure is a sentence for the model (sent back as the
 * tool's answer so it can correct itself): models do emit broken JSON. Unknown keys are ignored.
 */
export function parseToolArgs<I extends z.ZodObject>(
  tool: ToolDefinition<I>,
  raw: string | unknown,
): { ok: true; value: z.infer<I> } | { ok: false; error: string } {
  let json: unknown = raw;
  if (typeof raw === "string") {
    try {
      json = JSON.parse(raw === "" ? "{}" : raw);
    } catch (e) {
      return { ok: false, error: `the arguments are not valid JSON (${(e as Error).message})` };
    }
  }
  // Models send null for "not given"; zod's optional() wants undefined.
  if (json && typeof json === "object" && !Array.isArray(json)) {
    json = Object.fromEntries(Object.entries(json).filter(([, v]) => v !== null));
  }
  const parsed = tool.input.safeParse(json);
  if (!parsed.success) {
    const why = fieldIssues(tool.input, parsed.error)
      .map((i) => (i.path === "(root)" ? i.message : `${i.path}: ${i.message}`))
      .join("; ");
    return { ok: false, error: why };
  }
  return { ok: true, value: parsed.data };
}
