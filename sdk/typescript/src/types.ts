// The wire types of the public API, written out so the package is self-contained (its .d.ts imports
// nothing outside it, and zod is never needed). They are the zod schemas of shared/api.ts and
// shared/errors.ts in plain TypeScript: test/unit/sdk-wire-types.test.ts checks, at typecheck time,
// that each one equals the type the schema infers, so a schema change breaks the typecheck until
// this file follows it.

/** The server's stable error codes (README error table). */
export type ErrorCode =
  | "invalid_request"
  | "invalid_json"
  | "invalid_path"
  | "unauthenticated"
  | "invalid_token"
  | "token_expired"
  | "missing_tenant"
  | "relay_signature_invalid"
  | "relay_expired"
  | "relay_replayed"
  | "token_replayed"
  | "insufficient_scope"
  | "not_found"
  | "sandbox_not_found"
  | "file_not_found"
  | "request_not_found"
  | "process_not_found"
  | "secret_not_found"
  | "secret_limit"
  | "link_not_found"
  | "method_not_allowed"
  | "sandbox_evicted"
  | "host_not_allowed"
  | "websocket_required"
  | "stale_lease"
  | "sandbox_name_conflict"
  | "process_exited"
  | "stdin_closed"
  | "not_a_tty"
  | "spawn_failed"
  | "port_not_allowed"
  | "payload_too_large"
  | "edit_not_found"
  | "edit_not_unique"
  | "edit_no_change"
  | "unsupported_media_type"
  | "rate_limited"
  | "sandbox_limit"
  | "tenant_lease_limit"
  | "process_limit"
  | "ring_limit"
  | "link_limit"
  | "internal"
  | "not_supported_in_api_mode"
  | "not_supported_in_contract_mode"
  | "agent_unavailable"
  | "tunnel_closed"
  | "sandbox_failed"
  | "port_not_listening"
  | "model_unavailable"
  | "no_agent"
  | "sandbox_cluster_unavailable"
  | "queue_timeout"
  | "tunnel_busy"
  | "lease_lost"
  | "shutting_down"
  | "stdin_busy"
  | "model_not_configured"
  | "relay_timeout"
  | "request_cancelled";

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  requestId: string;
  /** Seconds, for 429/503: mirrors the Retry-After header. */
  retryAfterSeconds?: number | undefined;
  /** Validation details (paths and messages). */
  details?: Array<{ path: string; message: string }> | undefined;
  /** `process_exited` only: how the process ended (null exit code: killed by `signal` or its timeout). */
  exitCode?: number | null | undefined;
  signal?: string | null | undefined;
}

// ---- exec ----

/** The exec request body (`POST /v1/exec`, `POST /v1/sandboxes/:id/exec`). */
export interface ExecRequestInput {
  command: string;
  /** 1..900, default 30. */
  timeoutSeconds?: number | undefined;
  stdin?: string | undefined;
  /** `/workspace` or below it. */
  cwd?: string | undefined;
  env?: Record<string, string> | undefined;
  /** `base64`: stdout/stderr (result and stream events) are base64 of the exact bytes. */
  outputEncoding?: "utf8" | "base64" | undefined;
  /** `client.exec` only: where this call's pod may connect (gone when it is released). Absent: nowhere. */
  network?: { allow?: string[] | undefined; deny?: string[] | undefined } | undefined;
}

export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  truncated: boolean;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
  durationMs: number;
  requestId: string;
  region?: string | undefined;
  pod: string;
  queueMs: number;
}

export type ExecStreamEvent =
  | { type: "queued"; position: number }
  | { type: "acquired"; pod: string; queueMs: number }
  | { type: "stdout"; data: string }
  | { type: "stderr"; data: string }
  | { type: "result"; result: ExecResult }
  | { type: "error"; error: ErrorBody };

// ---- sandboxes ----

export interface SandboxCreateRequestInput {
  /** Get-or-create by name: 1-63 of [a-z0-9-]. */
  name?: string | undefined;
  idleTimeoutSeconds?: number | undefined;
  maxLifetimeSeconds?: number | undefined;
  /** Default environment of every command run in the sandbox (a command's own env wins). */
  env?: Record<string, string> | undefined;
  /**
   * Where the sandbox may connect through the egress proxy: host names, `*.name`, IPs or CIDRs,
   * each with an optional `:port` (default 80 and 443). Absent: nowhere.
   */
  network?: { allow?: string[] | undefined; deny?: string[] | undefined } | undefined;
  /**
   * Names of the tenant's secrets (`client.secrets.put`) the sandbox may use: each is in its env
   * as a placeholder, which the egress proxy replaces with the value only toward the secret's hosts.
   */
  secrets?: string[] | undefined;
}

/** `client.secrets.put(name, …)`: the value (write-only) and where the proxy may send it. */
export interface SecretPutRequest {
  value: string;
  /** Host names or `*.name`, optional `:port` (default 80 and 443). */
  hosts: string[];
  /** The request header the value goes into (default Authorization). */
  header?: string | undefined;
  /** What that header becomes; `{value}` is the secret (default `Bearer {value}` for Authorization). */
  format?: string | undefined;
}

/** A stored secret as the API shows it: never its value. */
export interface SecretInfo {
  name: string;
  hosts: string[];
  header: string;
  format: string;
  updatedAt: string;
}

/** A sandbox's network policy as answered (both lists always present; empty allow = no network). */
export interface SandboxNetwork {
  allow: string[];
  deny: string[];
}

export interface SandboxWire {
  id: string;
  name?: string | undefined;
  region: string;
  pod: string;
  state: "ready";
  createdAt: string;
  lastActivityAt: string;
  /** min(last activity + idle timeout, creation + max lifetime). */
  expiresAt: string;
  idleTimeoutSeconds: number;
  maxLifetimeSeconds: number;
}

export interface FileEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mtime: string;
}

export interface FileWriteResult {
  path: string;
  size: number;
}

// ---- chat ----

/** A port link a chat model opened (open_port_link, session mode); `url` is added by the edge. */
export interface ChatPortLink {
  sandboxId: string;
  linkId: string;
  port: number;
  public: boolean;
  expiresAt: string;
  url?: string | undefined;
}

export interface ToolCallRecord {
  id: string;
  command: string;
  exitCode: number | null;
  durationMs: number;
  truncated: boolean;
  timedOut: boolean;
  /** open_port_link: the link it opened, with its URL for you (the model never sees the URL). */
  link?: ChatPortLink | undefined;
}

export interface ChatResponse {
  requestId: string;
  sessionId: string;
  region?: string | undefined;
  reply: string;
  toolCalls: ToolCallRecord[];
  /** Model calls the turn made (each one costs a quota token). */
  modelCalls?: number | undefined;
  sandboxId?: string | undefined;
}

export type ChatEvent =
  | { type: "sandbox.waiting" }
  | { type: "sandbox.acquired"; pod: string; sandboxId?: string | undefined }
  | { type: "tool.call"; id: string; command: string }
  | {
      type: "tool.result";
      id: string;
      exitCode: number | null;
      durationMs: number;
      truncated: boolean;
      timedOut: boolean;
      link?: ChatPortLink | undefined;
    }
  | { type: "assistant.delta"; text: string }
  | { type: "assistant.message"; text: string }
  | { type: "sandbox.released"; pod: string }
  | { type: "done"; response: ChatResponse }
  /** `modelCalls`: the model calls the failed turn made (charged to the quota like a finished turn's). */
  | { type: "error"; error: ErrorBody; modelCalls?: number };

// ---- pool ----

export interface PodSnapshot {
  name: string;
  state: "starting" | "ready" | "leased" | "recycling" | "failed";
  podIP: string | null;
  holder: { agentId: string; requestId: string; tenant: string } | null;
  acquiredAt: string | null;
  renewedAt: string | null;
  leaseDurationSeconds: number | null;
  transitions: number;
}

export interface SandboxSnapshot {
  id: string;
  pod: string;
  tenant: string;
  name: string | null;
  idleTimeoutSeconds: number;
  lastActivityAt: string;
  expiresAt: string;
  lastCommand: string | null;
  /** Its open port links (absent from agents that predate them); no tokens. */
  links?:
    | Array<{ id: string; port: number; public: boolean; createdAt: string; expiresAt: string }>
    | undefined;
}

/** One of the agent's recent executions (newest first, bounded). */
export interface ExecutionSnapshot {
  requestId: string;
  tenant: string;
  pod: string;
  commandPreview: string;
  startedAt: string;
  /** null while the command runs. */
  finishedAt: string | null;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number | null;
  queueMs: number | null;
}

/** A running process an agent started (its exit not seen yet). */
export interface ProcessSnapshot {
  /** Null for a chat request's own pod. */
  sandboxId: string | null;
  pod: string;
  tenant: string;
  pid: number;
  commandPreview: string;
  tty: boolean;
  startedAt: string;
}

export interface PoolSnapshot {
  region: string;
  agentId: string;
  at: string;
  poolSize: number;
  recycle: "replace" | "scrub" | "reuse-same-tenant";
  pods: PodSnapshot[];
  queue: {
    depth: number;
    waiters: Array<{ requestId: string; tenant: string; waitedMs: number }>;
  };
  totals: {
    acquisitions: number;
    conflicts: number;
    queueTimeouts: number;
    acquireP50Ms: number | null;
    acquireP99Ms: number | null;
  };
  sandboxes?: SandboxSnapshot[] | undefined;
  /** This agent's recent executions (absent from agents that predate them). */
  executions?: ExecutionSnapshot[] | undefined;
  /** The running processes this agent started (absent from agents that predate them). */
  processes?: ProcessSnapshot[] | undefined;
  /** A sandbox pod's own cgroup pids limit as the agent read it once ("max": unlimited). */
  sandboxPids?: { pidsMax: string | null; unlimited: boolean; pod: string; checkedAt: string } | undefined;
}

// ---- port links (POST/GET/DELETE /v1/sandboxes/:id/ports…) ----

/** `POST …/ports/:port/links`. */
export interface PortLinkCreateRequestInput {
  /** 10..86400, default 3600. */
  ttlSeconds?: number | undefined;
  /** Anyone with the URL may use it; otherwise requests also need the tenant's JWT (default false). */
  public?: boolean | undefined;
}

/** An open port link and its URL. */
export interface PortLink {
  id: string;
  port: number;
  public: boolean;
  createdAt: string;
  expiresAt: string;
  url: string;
}

// ---- processes (POST/GET/DELETE /v1/sandboxes/:id/processes…) ----

/** The signals a process group may be sent (the API's allow-list). */
export const PROCESS_SIGNALS = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGKILL",
  "SIGUSR1",
  "SIGUSR2",
  "SIGSTOP",
  "SIGCONT",
  "SIGTSTP",
  "SIGWINCH",
] as const;
export type ProcessSignal = (typeof PROCESS_SIGNALS)[number];

/** `POST …/processes`: exactly one of `command` (sh -c) and `argv`. */
export interface ProcessStartRequestInput {
  command?: string | undefined;
  argv?: string[] | undefined;
  cwd?: string | undefined;
  env?: Record<string, string> | undefined;
  /** 0..604800; 0 (default) = until it exits, is deleted or the sandbox ends. */
  timeoutSeconds?: number | undefined;
  tty?: boolean | undefined;
  cols?: number | undefined;
  rows?: number | undefined;
}

/** One process, running or recently exited. */
export interface ProcessInfo {
  pid: number;
  command: string | null;
  argv: string[] | null;
  tty: boolean;
  cwd: string;
  startedAt: string;
  running: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  endedAt: string | null;
  /** Offset one past the newest output byte. */
  outputBytes: number;
  /** The oldest offset still readable. */
  outputStart: number;
  ringBytes: number;
  stdinOpen: boolean;
}

/** `GET …/output` as JSON (`data` is base64). */
export interface ProcessOutput {
  offset: number;
  next: number;
  dropped: number;
  data: string;
  eof: boolean;
}

/** The output stream's `output` event (`data` is base64). */
export interface ProcessOutputEvent {
  offset: number;
  dropped: number;
  data: string;
}

/** The output stream's last event: how the process ended. */
export interface ProcessExitEvent {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  outputBytes: number;
}

export interface StdinResult {
  written: number;
  pending: number;
  stdinOpen: boolean;
}

// ---- the client's own names ----

/** Every stream event but `error`: the iterators throw a SandboxApiError for that one. */
export type ExecEvent = Exclude<ExecStreamEvent, { type: "error" }>;
export type ChatStreamEvent = Exclude<ChatEvent, { type: "error" }>;

/** The exec body without the command. */
export type ExecBody = Omit<ExecRequestInput, "command">;

export interface PoolOverview {
  requestId: string;
  regions: Array<{ region: string; pool?: PoolSnapshot; error?: ErrorBody }>;
}

export type SandboxInfo = SandboxWire;
export type CreateSandboxBody = SandboxCreateRequestInput;
export type WriteFileResult = FileWriteResult;

export type ProcessStartBody = ProcessStartRequestInput;
/** A JSON output read as the API sends it (`data` is base64). */
export type ProcessOutputRead = ProcessOutput;
/** How a process ended (the output stream's `exit` event). */
export type ProcessExit = ProcessExitEvent;
