// The wire types, derived from the zod schemas in shared/ with type-only imports: the client has
// no runtime dependency on zod, and a change to a schema breaks this package's typecheck.
import type {
  ChatEvent,
  ChatResponse,
  ExecRequestInput,
  ExecResult,
  ExecStreamEvent,
  PoolSnapshot,
} from "../../../shared/api.ts";
import type { ErrorBody, ErrorCode } from "../../../shared/errors.ts";

export type { ChatEvent, ChatResponse, ErrorBody, ErrorCode, ExecResult, ExecStreamEvent, PoolSnapshot };

/** Every stream event but `error`: the iterators throw a SandboxApiError for that one. */
export type ExecEvent = Exclude<ExecStreamEvent, { type: "error" }>;
export type ChatStreamEvent = Exclude<ChatEvent, { type: "error" }>;

/** The exec body without the command; `outputEncoding` is the sandboxes contract's addition. */
export type ExecBody = Omit<ExecRequestInput, "command"> & { outputEncoding?: "utf8" | "base64" };

export interface PoolOverview {
  requestId: string;
  regions: Array<{ region: string; pool?: PoolSnapshot; error?: ErrorBody }>;
}

// ---- sandboxes (the issue-19 contract: POST/GET/DELETE /v1/sandboxes, files under /files/<path>) ----

export interface SandboxInfo {
  id: string;
  region: string;
  pod: string;
  state: string;
  createdAt: string;
  lastActivityAt: string;
  expiresAt: string;
  idleTimeoutSeconds: number;
  name?: string;
  maxLifetimeSeconds?: number;
}

export interface CreateSandboxBody {
  /** Get-or-create key (1-63 of [a-z0-9-]), unique per tenant: an existing live one is returned. */
  name?: string;
  idleTimeoutSeconds?: number;
  maxLifetimeSeconds?: number;
  env?: Record<string, string>;
}

export interface FileEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mtime: string | number;
}

export interface WriteFileResult {
  path: string;
  size: number;
}
