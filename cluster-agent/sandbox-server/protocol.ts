/*
 * The exec server's wire protocol: the one contract between this server and the agent's clients
 * (cluster-agent/exec/http-executor.ts and scrubber.ts). It lives in the server's folder because
 * the server may import nothing outside it; the agent imports it from here. Type-only apart from a
 * few constants and guards, so the agent pulls in no server code.
 */

export const EXEC_SERVER_PORT = 8080;

export const EXEC_SERVER_PATHS = {
  health: "/health",
  exec: "/exec",
  reset: "/reset",
  inspect: "/inspect",
  /** GET / PUT / DELETE `?path=<relative to the workspace, or absolute under it>` (file-routes.ts). */
  files: "/files",
} as const;

/** PUT /files: the most bytes the agent allows this write (the server's own ceiling still applies). */
export const MAX_BYTES_HEADER = "x-max-bytes";
/** GET /files answers `file` (raw bytes, Content-Length) or `dir` (JSON `{entries, truncated}`). */
export const FILE_KIND_HEADER = "x-file-kind";

/** Every call but /health: `Authorization: Bearer <this pod's exec token>`; plus the lease's fence. */
export const FENCE_HEADER = "x-fence-token";

/** POST /exec body (JSON). */
export interface ExecRequestBody {
  command: string;
  timeoutMs: number;
  stdin?: string;
  cwd?: string;
  env?: Record<string, string>;
}

/** POST /exec answers 200 with ndjson: output frames as they come, then exactly one result frame. */
export interface OutputFrame {
  type: "stdout" | "stderr";
  /** base64 of the bytes, already under the output cap. */
  data: string;
}

/** How a command ended; the true byte counts even when the output was truncated. */
export interface ExecResultFields {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  truncated: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  durationMs: number;
}

export type ResultFrame = { type: "result" } & ExecResultFields;
export type ExecFrame = OutputFrame | ResultFrame;

/** A stream that ends without a result frame means the sandbox failed (e.g. the pod is going away). */
export function encodeFrame(frame: ExecFrame): string {
  return `${JSON.stringify(frame)}\n`;
}

export function isOutputFrame(f: Record<string, unknown>): f is Record<string, unknown> & OutputFrame {
  return (f.type === "stdout" || f.type === "stderr") && typeof f.data === "string";
}

export function isResultFrame(f: Record<string, unknown>): f is Record<string, unknown> & ResultFrame {
  return (
    f.type === "result" &&
    (f.exitCode === null || Number.isInteger(f.exitCode)) &&
    (f.signal === null || typeof f.signal === "string") &&
    typeof f.timedOut === "boolean" &&
    typeof f.truncated === "boolean" &&
    Number.isInteger(f.stdoutBytes) &&
    Number.isInteger(f.stderrBytes) &&
    typeof f.durationMs === "number"
  );
}

/** Errors: `{"error":{"code","message"}}` with 400/401/403/404/409/413/500. */
export type ExecServerErrorCode =
  | "invalid_request"
  | "unauthenticated"
  | "stale_lease"
  | "payload_too_large"
  | "not_found"
  | "reset_refused"
  | "invalid_path"
  | "file_not_found"
  | "internal";

export interface ExecServerErrorBody {
  error: { code: ExecServerErrorCode; message: string };
}

/**
 * POST /reset (scrub): every other process killed, /workspace, /tmp and /dev/shm emptied, SysV IPC
 * and POSIX message queues removed — and verified: anything left answers 500. Refused (403
 * `reset_refused`) outside a PID namespace of its own and when commands could alter the server.
 */
export interface ResetResult {
  killed: number;
  /** Top-level entries removed from /workspace and /tmp. */
  removed: number;
  /** /dev/shm entries, SysV objects and POSIX queues removed. */
  ipcRemoved: number;
}

/** GET /inspect: what is left; on a clean, trustworthy pod every count is 0 and `serverExposed` false. */
export interface InspectResult {
  processes: number;
  workspaceEntries: number;
  tmpEntries: number;
  shmEntries: number;
  sysvIpcObjects: number;
  /** null when /dev/mqueue is not mounted (queues cannot be listed; /reset then answers 500). */
  mqueues: number | null;
  /** True when a command could ptrace or rewrite this server (it is dumpable, or SIGUSR1 is unguarded). */
  serverExposed: boolean;
  fence: number;
}
