// The wire types, derived from the zod schemas in shared/ with type-only imports: the client has
// no runtime dependency on zod, and a change to a schema breaks this package's typecheck.

import type {
  ChatEvent,
  ChatResponse,
  ExecRequestInput,
  ExecResult,
  ExecStreamEvent,
  FileEntry,
  FileWriteResult,
  PoolSnapshot,
  PROCESS_SIGNALS,
  ProcessExitEvent,
  ProcessInfo,
  ProcessOutput,
  ProcessOutputEvent,
  ProcessStartRequestInput,
  SandboxCreateRequestInput,
  Sandbox as SandboxWire,
  StdinResult,
} from "../../../shared/api.ts";
import type { ErrorBody, ErrorCode } from "../../../shared/errors.ts";

export type { ChatEvent, ChatResponse, ErrorBody, ErrorCode, ExecResult, ExecStreamEvent, PoolSnapshot };

/** Every stream event but `error`: the iterators throw a SandboxApiError for that one. */
export type ExecEvent = Exclude<ExecStreamEvent, { type: "error" }>;
export type ChatStreamEvent = Exclude<ChatEvent, { type: "error" }>;

/** The exec body without the command. */
export type ExecBody = Omit<ExecRequestInput, "command">;

export interface PoolOverview {
  requestId: string;
  regions: Array<{ region: string; pool?: PoolSnapshot; error?: ErrorBody }>;
}

// ---- sandboxes (POST/GET/DELETE /v1/sandboxes, files under /files/<path>) ----

export type SandboxInfo = SandboxWire;
export type CreateSandboxBody = SandboxCreateRequestInput;
export type { FileEntry };
export type WriteFileResult = FileWriteResult;

// ---- processes (POST/GET/DELETE /v1/sandboxes/:id/processes…) ----

export type { ProcessInfo, ProcessOutputEvent, StdinResult };
export type ProcessStartBody = ProcessStartRequestInput;
/** A JSON output read as the API sends it (`data` is base64). */
export type ProcessOutputRead = ProcessOutput;
/** How a process ended (the output stream's `exit` event). */
export type ProcessExit = ProcessExitEvent;
export type ProcessSignal = (typeof PROCESS_SIGNALS)[number];
