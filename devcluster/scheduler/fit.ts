import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { quantityBytes, quantityMillis } from "../kubelet/quantity.ts";

/** What the scheduler's NodeResourcesFit plugin counts: CPU millicores, memory bytes, pods. */
export interface Resources {
  cpu: number;
  memory: number;
  pods: number;
}

const ZERO: Resources = { cpu: 0, memory: 0, pods: 0 };

function sum(a: Resources, b: Resources): Resources {
  return { cpu: a.cpu + b.cpu, memory: a.memory + b.memory, pods: a.pods + b.pods };
}

/**
 * A pod's requests as kube-scheduler computes them: the sum over its containers, or the largest
 * init container's when that is more (init containers run one at a time, before the others).
 */
export function podRequests(pod: V1Pod): Resources {
  const of = (c: { resources?: { requests?: Record<string, string> } }): Resources => ({
    cpu: quantityMillis(c.resources?.requests?.cpu) ?? 0,
    memory: quantityBytes(c.resources?.requests?.memory) ?? 0,
    pods: 0,
  });
  const main = (pod.spec?.containers ?? []).map(of).reduce(sum, ZERO);
  const init = (pod.spec?.initContainers ?? []).map(of);
  return {
    cpu: Math.max(main.cpu, ...init.map((r) => r.cpu)),
    memory: Math.max(main.memory, ...init.map((r) => r.memory)),
    pods: 1,
  };
}

export function allocatable(node: V1Node): Resources {
  const a = node.status?.allocatable ?? {};
  return {
    cpu: quantityMillis(a.cpu) ?? 0,
    memory: quantityBytes(a.memory) ?? 0,
    pods: Number(a.pods ?? 0),
  };
}

/** Pods that hold a node's resources: bound to it and not finished (a terminating pod still holds them). */
export function requested(pods: Iterable<V1Pod>): Resources {
  let total = ZERO;
  for (const p of pods) {
    const phase = p.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") continue;
    total = sum(total, podRequests(p));
  }
  return total;
}

/** Why `pod` does not fit (kube-scheduler's wording: "Insufficient cpu", "Too many pods"); empty when it fits. */
export function misfits(pod: Resources, used: Resources, node: Resources): string[] {
  const out: string[] = [];
  if (used.pods + 1 > node.pods) out.push("Too many pods");
  if (pod.cpu > 0 && used.cpu + pod.cpu > node.cpu) out.push("Insufficient cpu");
  if (pod.memory > 0 && used.memory + pod.memory > node.memory) out.push("Insufficient memory");
  return out;
}

/**
 * The message kube-scheduler writes on `PodScheduled=False/Unschedulable` and the FailedScheduling
 * event: each reason with the number of nodes it applies to, sorted, then what preemption found.
 * E.g. `0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No
 * preemption victims found for incoming pod..` (the doubled period is the real scheduler's).
 */
export function unschedulableMessage(nodeCount: number, reasonsPerNode: string[][]): string {
  if (nodeCount === 0) return "no nodes available to schedule pods";
  const counts = new Map<string, number>();
  for (const reasons of reasonsPerNode) for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1);
  const parts = [...counts.entries()].map(([r, n]) => `${n} ${r}`).sort();
  const resourceOnly = reasonsPerNode.filter((r) =>
    r.every((x) => x.startsWith("Insufficient") || x === "Too many pods"),
  );
  const helpless = nodeCount - resourceOnly.length;
  const preemption = [
    ...(resourceOnly.length > 0
      ? [`${resourceOnly.length} No preemption victims found for incoming pod.`]
      : []),
    ...(helpless > 0 ? [`${helpless} Preemption is not helpful for scheduling.`] : []),
  ].sort();
  return `0/${nodeCount} nodes are available: ${parts.join(", ")}. preemption: 0/${nodeCount} nodes are available: ${preemption.join(", ")}.`;
}
