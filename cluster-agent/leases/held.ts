import type { V1Lease } from "@kubernetes/client-node";
import { transitionsOf } from "../pool-state/lease-record.ts";

/** One lease this replica holds, from hand-out to the end of its release. */
export interface Held {
  pod: string;
  podIP: string;
  tenant: string;
  requestId: string;
  /** The Lease's holderIdentity as we wrote it. */
  holder: string;
  fence: number;
  /** The Lease's leaseDurationSeconds as we wrote it: renewed every third of it. */
  ttlSeconds: number;
  lease: V1Lease;
  acquiredAt: number;
  lastRenewOk: number;
  lost: AbortController;
  renewTimer: unknown;
  renewing: Promise<void> | undefined;
  releasing: Promise<void> | undefined;
  usedUntil: string | undefined;
}

/** What a held lease's holderIdentity says: which replica, on behalf of which request. */
export const holderIdentity = (agentId: string, requestId: string) => `${agentId}/${requestId}`;

/** The record of a lease just won: its fence is the Lease's leaseTransitions after our CAS. */
export function newHeld(a: {
  pod: string;
  podIP: string;
  tenant: string;
  requestId: string;
  holder: string;
  ttlSeconds: number;
  lease: V1Lease;
  now: number;
}): Held {
  return {
    pod: a.pod,
    podIP: a.podIP,
    tenant: a.tenant,
    requestId: a.requestId,
    holder: a.holder,
    fence: transitionsOf(a.lease),
    ttlSeconds: a.ttlSeconds,
    lease: a.lease,
    acquiredAt: a.now,
    lastRenewOk: a.now,
    lost: new AbortController(),
    renewTimer: undefined,
    renewing: undefined,
    releasing: undefined,
    usedUntil: undefined,
  };
}
