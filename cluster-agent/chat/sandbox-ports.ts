import type { ExecOutcome } from "../../shared/api.ts";
import type { Result } from "../../shared/errors.ts";

/*
 * The parts of the lease manager (cluster-agent/leases) and executors (cluster-agent/exec) the chat
 * loop uses, as specified in brief/INTERFACES.md. Declared structurally here so the chat module
 * depends on the contract, not on those modules' files: their LeaseHandle and Executor satisfy these.
 */

export interface ChatLease {
  pod: string;
  podIP: string;
  namespace: string;
  fence: number;
  /** Fires when a renewal fails or the lease is taken over: the running command must stop. */
  lost: AbortSignal;
  /** Idempotent, never throws. */
  release(): Promise<void>;
}

export interface ChatExecTarget {
  namespace: string;
  pod: string;
  podIP: string;
  fence: number;
}

export interface ChatExecCall {
  command: string;
  timeoutMs: number;
  signal: AbortSignal;
  cwd?: string;
}

export interface ChatExecutor {
  exec(target: ChatExecTarget, call: ChatExecCall): Promise<Result<ExecOutcome>>;
}

/** Takes the request's one lease; errors: queue_timeout, shutting_down (tenant and request id are bound by the caller). */
export type AcquireLease = (signal: AbortSignal) => Promise<Result<ChatLease>>;
