import type { V1Pod } from "@kubernetes/client-node";

export const isTerminating = (p: V1Pod) => Boolean(p.metadata?.deletionTimestamp);
export const isFinished = (p: V1Pod) => p.status?.phase === "Failed" || p.status?.phase === "Succeeded";

/** Ready = Running, has an IP, condition Ready=True, and not on its way out. */
export function isPodReady(p: V1Pod): boolean {
  if (isTerminating(p) || isFinished(p)) return false;
  if (p.status?.phase !== "Running" || !p.status.podIP) return false;
  return (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** Counted in the pool: alive and not being deleted (a Terminating pod is already gone for us). */
export const isPoolMember = (p: V1Pod) => !isTerminating(p) && !isFinished(p);
