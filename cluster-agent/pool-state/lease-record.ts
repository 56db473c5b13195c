import type { V1Lease } from "@kubernetes/client-node";
import { microNow, microTimeString, toMicroTime } from "../k8s/microtime.ts";
import { KEPT_FOR_TENANT_ANNOTATION, REQUEST_ID_ANNOTATION, TENANT_ANNOTATION } from "./labels.ts";
import { SANDBOX_ANNOTATIONS } from "./sandbox-record.ts";

export interface HolderIdentity {
  agentId: string;
  requestId: string;
}

export function parseHolder(holderIdentity: string | undefined | null): HolderIdentity | null {
  if (!holderIdentity) return null;
  const slash = holderIdentity.indexOf("/");
  if (slash < 0) return { agentId: holderIdentity, requestId: "" };
  return { agentId: holderIdentity.slice(0, slash), requestId: holderIdentity.slice(slash + 1) };
}

export const holderOf = (l: V1Lease) => l.spec?.holderIdentity ?? null;
/** Free = nobody holds it. A held lease that stopped being renewed is not free: the controller recycles it. */
export const isLeaseFree = (l: V1Lease) => !l.spec?.holderIdentity;
export const tenantOf = (l: V1Lease) => l.metadata?.annotations?.[TENANT_ANNOTATION];
/** The tenant whose scrubbed pod this is (same-tenant reuse): it never goes to another tenant. */
export const keptForTenantOf = (l: V1Lease) => l.metadata?.annotations?.[KEPT_FOR_TENANT_ANNOTATION];
export const requestIdOf = (l: V1Lease) => l.metadata?.annotations?.[REQUEST_ID_ANNOTATION];
export const transitionsOf = (l: V1Lease) => l.spec?.leaseTransitions ?? 0;

/**
 * What identifies "a change of the lease record" for observed-time expiry (client-go compares the
 * whole LeaderElectionRecord): who holds it, its renew time and its transition count.
 */
export function recordKey(l: V1Lease): string {
  const s = l.spec ?? {};
  return [
    s.holderIdentity ?? "",
    microTimeString(s.renewTime as Date | string | undefined) ?? "",
    s.leaseTransitions ?? 0,
    s.leaseDurationSeconds ?? 0,
  ].join("|");
}

/**
 * The Lease's annotations without what belonged to one holder's use of the pod: its network policy
 * and its secrets' placeholders. What the egress proxy allows a pod follows its holder, so nothing
 * of the last holder's may outlive a hand-over or a release.
 */
function withoutUse(lease: V1Lease): Record<string, string> {
  const annotations = { ...(lease.metadata?.annotations ?? {}) };
  delete annotations[SANDBOX_ANNOTATIONS.network];
  delete annotations[SANDBOX_ANNOTATIONS.secrets];
  return annotations;
}

/**
 * The body of a compare-and-swap that takes `lease` for `holder`: a new acquisition (the fence,
 * leaseTransitions, goes up by one), with who it is for in the annotations when that is a request.
 */
export function claimedLease(
  lease: V1Lease,
  claim: {
    holder: string;
    durationSeconds?: number | undefined;
    tenant?: string;
    requestId?: string;
    /** A pod handed from one holder straight to the next of the same tenant: marked as that tenant's. */
    keptForTenant?: string;
    /**
     * The network policy of this holder's use of the pod (`POST /v1/exec` with `network`), as
     * `networkAnnotation` writes it. Absent: none. Never inherited from an earlier holder.
     */
    network?: string | undefined;
  },
): V1Lease {
  const now = microNow();
  const annotations = withoutUse(lease);
  if (claim.network !== undefined) annotations[SANDBOX_ANNOTATIONS.network] = claim.network;
  if (claim.tenant !== undefined) annotations[TENANT_ANNOTATION] = claim.tenant;
  if (claim.keptForTenant !== undefined) annotations[KEPT_FOR_TENANT_ANNOTATION] = claim.keptForTenant;
  if (claim.requestId !== undefined) annotations[REQUEST_ID_ANNOTATION] = claim.requestId;
  return {
    ...lease,
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { ...lease.metadata, annotations },
    spec: {
      ...lease.spec,
      holderIdentity: claim.holder,
      acquireTime: now,
      renewTime: now,
      ...(claim.durationSeconds !== undefined ? { leaseDurationSeconds: claim.durationSeconds } : {}),
      leaseTransitions: transitionsOf(lease) + 1,
    },
  };
}

/** The body of a compare-and-swap that frees `lease`, keeping leaseTransitions (the fence) monotonic. */
export function freedLease(lease: V1Lease): V1Lease {
  const annotations = withoutUse(lease);
  delete annotations[TENANT_ANNOTATION];
  delete annotations[REQUEST_ID_ANNOTATION];
  return {
    ...lease,
    metadata: { ...lease.metadata, annotations },
    spec: {
      ...lease.spec,
      holderIdentity: undefined,
      acquireTime: toMicroTime(lease.spec?.acquireTime),
      renewTime: microNow(),
    },
  };
}
