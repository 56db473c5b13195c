import type { Result } from "../../shared/errors.ts";

/** Structurally the ExecTarget of cluster-agent/exec (INTERFACES.md); declared here so leases/ depends on no executor. */
export interface ScrubTarget {
  namespace: string;
  pod: string;
  podIP: string;
  fence: number;
}

/** Structurally the `Scrubber` of cluster-agent/exec: reset the pod and verify it is clean. */
export interface Scrubber {
  scrub(target: ScrubTarget): Promise<Result<{ killed: number; removed: number }>>;
}

export interface LeaseHandle {
  pod: string;
  podIP: string;
  namespace: string;
  /** The fencing token: the Lease's leaseTransitions after our acquisition. */
  fence: number;
  requestId: string;
  tenant: string;
  queueMs: number;
  /** Fires when a renewal fails or the lease is taken over. */
  lost: AbortSignal;
  /** Idempotent, never throws. */
  release(): Promise<void>;
}

export interface AcquireRequest {
  tenant: string;
  requestId: string;
  signal?: AbortSignal | undefined;
}
