import type { NetworkPolicyInput } from "../../shared/egress-policy.ts";
import type { Result } from "../../shared/errors.ts";
import type { SandboxLease } from "../exec/executor.ts";

/**
 * What happens to a pod after release: `replace` deletes it, `scrub` resets and verifies it and
 * frees it for anyone, `reuse-same-tenant` scrubs it only to hand it straight to the next waiter
 * when that waiter is of the same tenant, and replaces it otherwise.
 */
export type RecycleMode = "replace" | "scrub" | "reuse-same-tenant";

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
  /**
   * The egress policy of this use (`POST /v1/exec`, a chat request's pod), written with the claim
   * in the same compare-and-swap, so the proxy knows it before the first command; gone with the
   * release.
   */
  network?: NetworkPolicyInput | undefined;
  /** The Lease's duration (default LEASE_TTL_SECONDS); renewed every third of it. */
  leaseSeconds?: number | undefined;
}

export type Acquire = (req: AcquireRequest) => Promise<Result<LeaseHandle>>;
