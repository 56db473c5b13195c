import type {
  ExecOutcome,
  FileEntry,
  ProcessInfo,
  ProcessOutput,
  ProcessStartRequest,
  StdinResult,
} from "../../shared/api.ts";
import { AppError, type Result } from "../../shared/errors.ts";
import type { ListPageResult } from "../../shared/list-page.ts";

/*
 * The one contract between the lease core, the request pipeline, chat and the executors: what a
 * leased sandbox is, how a command is run on it, and how a pod is scrubbed. Type-only, so leases/
 * and chat/ depend on this file and on no executor.
 */

export interface ExecTarget {
  namespace: string;
  pod: string;
  podIP: string;
  /** The lease's `leaseTransitions` when it was acquired: the exec server refuses lower ones. */
  fence: number;
}

/** A held lease on a sandbox pod, as its users see it. */
export interface SandboxLease extends ExecTarget {
  /** Fires when a renewal fails or the lease is taken over: the running command must stop. */
  lost: AbortSignal;
  /** Idempotent, never throws. */
  release(): Promise<void>;
  /**
   * Why the pod failed, if it did (evicted, OOM-killed: a `sandbox_evicted` error with the kubelet's
   * reason), waiting up to `waitMs` for its status to say so; undefined for a healthy pod.
   */
  ended?(waitMs: number): Promise<AppError | undefined>;
}

export interface ExecCall {
  command: string;
  timeoutMs: number;
  stdin?: string;
  cwd?: string;
  env?: Record<string, string>;
  /** How the outcome's stdout/stderr are encoded (default utf8; base64 = the exact bytes). */
  outputEncoding?: "utf8" | "base64";
  /** Abort = kill the command now (client gone, lease lost). */
  signal: AbortSignal;
  /** Output as it arrives, already capped (the same bytes the outcome keeps). */
  onOutput?: (stream: "stdout" | "stderr", chunk: Uint8Array) => void;
}

export interface Executor {
  readonly mode: "http" | "api" | "pydantic-http";
  exec(target: ExecTarget, call: ExecCall): Promise<Result<ExecOutcome>>;
  /**
   * A pod just turned Ready: open the connection its first command will use, so that command does
   * not pay connection setup (and the server's first request) on the response path. Best effort,
   * never throws; an executor without per-pod connections leaves it out.
   */
  warm?(podIP: string): void;
}

export type ReadResult =
  | { kind: "file"; size: number; body: ReadableStream<Uint8Array> }
  | ({ kind: "dir" } & FileListing);

/** One page of a listing (shared/list-page.ts): `next` is the `after` of the following page. */
export type FileListing = ListPageResult<FileEntry>;

/** Which page of a listing: at most `limit` entries (and SANDBOX_LIMITS.maxListBytes), after `after`. */
export interface ListOptions {
  recursive?: boolean;
  limit?: number;
  after?: string;
}

/**
 * File operations on one sandbox pod, the same in both exec modes: `http` (exec/files.ts) talks to
 * the exec server's /files, `api` (exec/api-files.ts) runs the same operations over pods/exec.
 * Paths are relative to the workspace ("." is the workspace) or absolute under it; the pod
 * resolves them (symlinks included). Callers go through the pipeline (LeasedSandbox), which adds
 * the lease's signal and turns a fence refusal into lease_lost.
 */
export interface SandboxFiles {
  write(
    target: ExecTarget,
    path: string,
    body: ReadableStream<Uint8Array> | Uint8Array,
    opts: { signal: AbortSignal; maxBytes: number },
  ): Promise<Result<{ path: string; size: number }>>;
  read(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<ReadResult>>;
  /** Recursive names are relative paths. */
  list(
    target: ExecTarget,
    path: string,
    opts: ListOptions & { signal: AbortSignal },
  ): Promise<Result<FileListing>>;
  remove(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<void>>;
}

/** How a process's output is asked for: JSON from an offset, or the live SSE stream. */
export interface ProcessOutputRequest {
  since?: number;
  maxBytes?: number;
  waitMs?: number;
}

/**
 * Long-lived processes in one sandbox pod (http mode only: exec/processes.ts over the exec
 * server's /processes; pods/exec cannot keep a process, so api mode has none). The state is in the
 * pod, so any replica serves any pid. Callers go through the pipeline (LeasedSandbox), which adds
 * the lease's signal and turns a fence refusal into lease_lost.
 */
export interface SandboxProcesses {
  start(
    target: ExecTarget,
    req: ProcessStartRequest,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>>;
  list(target: ExecTarget, opts: { signal: AbortSignal }): Promise<Result<ProcessInfo[]>>;
  /** With `waitMs`: answers once it has exited or that long passed (the agent's exit watch). */
  get(
    target: ExecTarget,
    pid: number,
    opts: { signal: AbortSignal; waitMs?: number },
  ): Promise<Result<ProcessInfo>>;
  output(
    target: ExecTarget,
    pid: number,
    q: ProcessOutputRequest,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessOutput>>;
  /**
   * The exec server's SSE stream from `since`, byte for byte (ids are offsets, framed by
   * shared/sse.ts there). Resolves at the head; `signal` ends the body (the server stops).
   */
  stream(
    target: ExecTarget,
    pid: number,
    since: number | undefined,
    opts: { signal: AbortSignal },
  ): Promise<Result<ReadableStream<Uint8Array>>>;
  stdin(
    target: ExecTarget,
    pid: number,
    bytes: Uint8Array,
    eof: boolean,
    opts: { signal: AbortSignal },
  ): Promise<Result<StdinResult>>;
  signal(
    target: ExecTarget,
    pid: number,
    signal: string,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>>;
  resize(
    target: ExecTarget,
    pid: number,
    size: { cols: number; rows: number },
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>>;
  /** Kill its group (if running) and forget it; answers how it ended. */
  remove(target: ExecTarget, pid: number, opts: { signal: AbortSignal }): Promise<Result<ProcessInfo>>;
}

/** One HTTP request to a port inside the sandbox (a port link's request, as the edge relayed it). */
export interface PortRequest {
  port: number;
  method: string;
  /** The app's path and query, as the client sent them. */
  path: string;
  headers: Array<[string, string]>;
  body?: ReadableStream<Uint8Array> | Uint8Array;
}

/** The app's answer: its status and headers (hop-by-hop ones dropped) and its body, streaming. */
export interface PortResponse {
  status: number;
  headers: Array<[string, string]>;
  body: ReadableStream<Uint8Array> | null;
}

/**
 * The sandbox's ports (http mode only: exec/ports.ts through the exec server's /ports; api mode has
 * no server in the pod to proxy through). Callers go through the pipeline (LeasedSandbox.onPorts).
 */
export interface SandboxPorts {
  /** Resolves at the app's response head; `signal` ends both bodies. */
  proxy(target: ExecTarget, req: PortRequest, opts: { signal: AbortSignal }): Promise<Result<PortResponse>>;
  /** A WebSocket to the port, open once the app accepted it; `signal` closes it. */
  webSocket(
    target: ExecTarget,
    req: Omit<PortRequest, "method" | "body"> & { protocols: string[] },
    opts: { signal: AbortSignal },
  ): Promise<Result<PortSocket>>;
}

/** One message of a port's WebSocket: bytes (binary) or a string (text). */
export type PortMessage = Uint8Array | string;

/** An open WebSocket to a sandbox's port (the app's end), in the shape a tunnel session needs. */
export interface PortSocket {
  /** The subprotocol the app chose ("" for none). */
  protocol: string;
  /** The app's messages in order; it ends when the app closes (then `closedWith`). */
  messages: ReadableStream<PortMessage>;
  /** Resolves once the message is written toward the app (the sender's backpressure). */
  send(msg: PortMessage): Promise<void>;
  close(code: number, reason: string): void;
  /** How the app closed (1005 when it gave no code). */
  closedWith(): { code: number; reason: string };
}

export interface Scrubber {
  /** /reset, then /inspect to verify nothing is left: no process, no file in /workspace or /tmp. */
  scrub(target: ExecTarget): Promise<Result<{ killed: number; removed: number }>>;
}

/** How long past the command's own timeout an executor waits for the sandbox's answer. */
export const RESULT_GRACE_MS = 10_000;

/**
 * The error every aborted call on a sandbox returns (command or file, either mode): the abort
 * reason when it is an AppError (lease lost, sandbox gone, shutting down), else request_cancelled.
 */
export function abortError(signal: AbortSignal): AppError {
  const reason: unknown = signal.reason;
  if (reason instanceof AppError) return reason;
  const why = reason instanceof Error ? reason.message : reason === undefined ? "aborted" : String(reason);
  return new AppError(
    "request_cancelled",
    `the request was aborted by its caller (${why}); its work was stopped`,
  );
}
