/*
 * The exec server's wire protocol: the one contract between this server and the agent's clients
 * (cluster-agent/exec/http-executor.ts and scrubber.ts). It lives in the server's folder because
 * the server may import nothing outside it; the agent imports it from here. Type-only apart from a
 * few constants and guards, so the agent pulls in no server code.
 */

import { PROCESS_SIGNALS } from "../../shared/process-signals.ts";

export const EXEC_SERVER_PORT = 8080;

export const EXEC_SERVER_PATHS = {
  health: "/health",
  exec: "/exec",
  reset: "/reset",
  inspect: "/inspect",
  /** GET / PUT / DELETE `?path=<relative to the workspace, or absolute under it>` (file-routes.ts). */
  files: "/files",
  /**
   * Long-lived processes (process-routes.ts): `POST /processes` starts one, `GET /processes` lists,
   * `GET|DELETE /processes/<pid>`, `GET /processes/<pid>/output?since=`, `POST …/stdin[?eof=1]`,
   * `POST …/signal`, `POST …/resize` (tty processes).
   */
  processes: "/processes",
  /**
   * `<any method> /ports/<port><path and query of the app>`: proxied to 127.0.0.1:<port> inside the
   * pod, both bodies streaming (port-proxy.ts). The app's request headers travel in
   * PORT_HEADERS_HEADER; an answer of the app carries PORT_UPSTREAM_HEADER, anything else is this
   * server's own (an error in the usual shape: `port_not_listening`, `port_not_allowed`, …).
   */
  ports: "/ports",
} as const;

/** Agent → server: the proxied request's own headers, JSON `[[name, value], …]`. */
export const PORT_HEADERS_HEADER = "x-port-request-headers";
/** Server → agent: set on the app's own answer (absent: the exec server answered itself). */
export const PORT_UPSTREAM_HEADER = "x-port-upstream";

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

/** Errors: `{"error":{"code","message"}}` with 400/401/403/404/409/413/429/500/503. */
export type ExecServerErrorCode =
  | "invalid_request"
  /** 404: no process with that pid in this pod's table (never started, deleted, or cleared by /reset). */
  | "process_not_found"
  /** 409: stdin or a signal to a process that has exited; the body carries its `exitCode`/`signal`. */
  | "process_exited"
  /** 409: stdin after `eof=1` closed it. */
  | "stdin_closed"
  /** 503 (retryable): the process is not reading its stdin and the bytes already queued reached the limit. */
  | "stdin_busy"
  /** 429: as many processes are running as the pod allows. */
  | "process_limit"
  /** 429: the pod's output rings would exceed their total byte budget (even after forgetting exited ones). */
  | "ring_limit"
  /** 400: the program could not be started (argv[0] not found, not executable). */
  | "spawn_failed"
  /** 409: a resize for a process without a terminal (started without `tty: true`, or its pty is gone). */
  | "not_a_tty"
  /** 502: nothing listens on the proxied port (connection refused). */
  | "port_not_listening"
  /** 400: a port outside 1–65535, or this server's own. */
  | "port_not_allowed"
  | "unauthenticated"
  | "stale_lease"
  | "payload_too_large"
  | "not_found"
  | "reset_refused"
  | "invalid_path"
  | "file_not_found"
  | "internal";

export interface ExecServerErrorBody {
  error: {
    code: ExecServerErrorCode;
    message: string;
    /** `process_exited` only: how the process ended. */
    exitCode?: number | null;
    signal?: string | null;
  };
}

/**
 * POST /processes body. Exactly one of `command` (run by `/bin/sh -c`) or `argv` (run directly).
 * The process leads its own process group; when it exits, whatever it left in its group is killed.
 * stdout and stderr go, interleaved in arrival order, into one output stream per process.
 */
export interface ProcessStartBody {
  command?: string;
  argv?: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** 0 (default): runs until signalled, deleted, or /reset; otherwise the group is SIGKILLed then. */
  timeoutSeconds?: number;
  /** This process's output ring; defaults to the server's PROCESS_RING_BYTES. */
  ringBytes?: number;
  /**
   * Run on a pseudo-terminal (default false): stdin and output then go through the pty (echo,
   * line editing, CRLF), `cols`×`rows` (default 80×24) is its size, changed by POST …/resize.
   */
  tty?: boolean;
  cols?: number;
  rows?: number;
}

/** One process, running or recently exited. POST /processes answers 201 with it. */
export interface ProcessInfo {
  pid: number;
  command: string | null;
  argv: string[] | null;
  tty: boolean;
  cwd: string;
  startedAt: string;
  running: boolean;
  /** Null while running, and when killed by a signal or the timeout. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  endedAt: string | null;
  /** Offset one past the newest output byte (total bytes the process wrote). */
  outputBytes: number;
  /** Oldest offset still readable. */
  outputStart: number;
  ringBytes: number;
  stdinOpen: boolean;
}

/** GET /processes: running processes first, then recently exited ones, newest first (bounded). */
export interface ProcessList {
  processes: ProcessInfo[];
}

/**
 * GET /processes/<pid>/output?since=N[&maxBytes=M][&waitMs=W] as JSON: the bytes from `since`.
 * `dropped` > 0 when `since` had already left the ring (the data starts at `offset`, later than
 * `since`). Read on with `since = next`. `eof`: the process has exited and `next` is its last byte.
 * `waitMs` (≤ 30 000) waits for bytes or the exit when there are none yet.
 */
export interface ProcessOutput {
  offset: number;
  next: number;
  dropped: number;
  /** base64 */
  data: string;
  eof: boolean;
}

/**
 * The same with `Accept: text/event-stream`: `output` events whose `id` is the offset after them
 * (reattach with `?since=<id>` or `Last-Event-ID`), data JSON `ProcessOutputEvent`; then, once the
 * process has exited and everything was sent, one `exit` event (`ProcessExitEvent`) and the end.
 */
export interface ProcessOutputEvent {
  offset: number;
  dropped: number;
  /** base64 */
  data: string;
}

export interface ProcessExitEvent {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  outputBytes: number;
}

/** POST /processes/<pid>/signal body: one of these names, sent to the process group. */
export { PROCESS_SIGNALS };
export type ProcessSignal = (typeof PROCESS_SIGNALS)[number];

/** POST /processes/<pid>/resize body (tty processes): answers the ProcessInfo. */
export interface ProcessResizeBody {
  cols: number;
  rows: number;
}

/**
 * POST /processes/<pid>/stdin[?eof=1] (raw bytes, at most 1 MiB) answers this once the pipe took
 * them, or after 5 s with some still `pending`.
 */
export interface StdinResult {
  written: number;
  /** Bytes accepted but not yet read by the process (it is slow); they are delivered in order. */
  pending: number;
  stdinOpen: boolean;
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
