import type { Result } from "../../shared/errors.ts";
import type { SandboxLease } from "../exec/executor.ts";

/** A lease as the manager hands it out: the sandbox contract plus who it was taken for. */
export interface LeaseHandle extends SandboxLease {
  requestId: string;
  tenant: string;
  queueMs: number;
  /** The part of `queueMs` that was the winning compare-and-swap PUT of the Lease. */
  casMs?: number;
}

export interface AcquireRequest {
  tenant: string;
  requestId: string;
  signal?: AbortSignal | undefined;
  /**
   * Who the Lease names as holder (default `<agentId>/<requestId>`): a holder that outlives one
   * request (a sandbox across requests) names itself here.
   */
  holder?: string | undefined;
  /** The Lease's duration (default LEASE_TTL_SECONDS); renewed every third of it. */
  leaseSeconds?: number | undefined;
}

export type Acquire = (req: AcquireRequest) => Promise<Result<LeaseHandle>>;
