import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { isPodReady } from "../pool-state/pod-state.ts";
import { isLeaseFree } from "../pool-state/lease-record.ts";

/** Pods that may be handed out: Ready, not terminating, with a free Lease, and not excluded. */
export function freePodNames(
  pods: Iterable<V1Pod>,
  leaseOf: (name: string) => V1Lease | undefined,
  exclude: (name: string) => boolean,
): string[] {
  const out: string[] = [];
  for (const p of pods) {
    const name = p.metadata?.name;
    if (!name || exclude(name) || !isPodReady(p)) continue;
    const lease = leaseOf(name);
    if (!lease || !isLeaseFree(lease)) continue;
    out.push(name);
  }
  return out.sort();
}

/**
 * The order this replica tries candidates in: the sorted list rotated by a per-replica random
 * offset plus a per-attempt counter, so replicas start at different pods and rarely race for one.
 */
export function rotate<T>(items: readonly T[], start: number): T[] {
  const n = items.length;
  if (n === 0) return [];
  const s = ((start % n) + n) % n;
  return [...items.slice(s), ...items.slice(0, s)];
}
