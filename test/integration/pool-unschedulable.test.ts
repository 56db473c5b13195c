// A pool on a node that holds fewer sandboxes than POOL_SIZE: the pods beyond it stay Pending
// (PodScheduled=False/Unschedulable, as on a real cluster), the controller counts them as such and
// stops adding pods, and the ones waiting are scheduled as soon as room frees.
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { loadPodTemplate } from "../../cluster-agent/pool/pod-template.ts";
import { isPodReady } from "../../cluster-agent/pool-state/pod-state.ts";
import { type LeaseCluster, startLeaseCluster, startPool, waitFor } from "../support/lease-cluster.ts";

let cluster: LeaseCluster;
let pool: AgentPool | undefined;
/** Room for exactly three sandbox pods (the template's CPU request is per pod). */
const template = loadPodTemplate(undefined);
const PER_POD_CPU = template.ok ? template.value.spec?.containers[0]?.resources?.requests?.cpu : undefined;

beforeAll(async () => {
  expect(PER_POD_CPU).toBe("100m");
  cluster = await startLeaseCluster("pool-unschedulable", { allocatable: { cpu: "300m" } });
}, 60_000);

afterAll(async () => {
  await pool?.close();
  await cluster?.close();
});

const unschedulable = (p: V1Pod) =>
  p.status?.conditions?.some(
    (c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable",
  ) ?? false;

async function live(): Promise<V1Pod[]> {
  const list = await cluster.clients.core.listNamespacedPod({ namespace: cluster.namespace });
  return list.items.filter((p) => !p.metadata?.deletionTimestamp);
}

describe("pool on a full node", () => {
  it("pods beyond the node stay Unschedulable, growth stops, and they start when room frees", async () => {
    const started = await startPool(cluster, {
      AGENT_ID: "unsched-0",
      POOL_SIZE: "5",
      LEADER_LEASE_SECONDS: "3",
    });
    pool = started.pool;
    const events = started.events;

    const full = await waitFor(
      "3 Ready + 2 Unschedulable",
      async () => {
        const pods = await live();
        const ready = pods.filter(isPodReady);
        const waiting = pods.filter(unschedulable);
        return pods.length === 5 && ready.length === 3 && waiting.length === 2
          ? { ready, waiting }
          : undefined;
      },
      30_000,
    );
    expect(full.waiting[0]?.status?.conditions?.find((c) => c.type === "PodScheduled")?.message).toMatch(
      /^0\/1 nodes are available: 1 Insufficient cpu\./,
    );

    // One Ready pod goes: the pool is short of its warm target, but pods are waiting for room, so it
    // decides to add none; the room the pod leaves goes to a waiting one.
    const gone = full.ready[0]?.metadata?.name ?? "";
    const seen = events.length;
    await cluster.clients.core.deleteNamespacedPod({ name: gone, namespace: cluster.namespace });
    const decision = await waitFor(
      "pool.scale unschedulable",
      () =>
        events.find(
          (e) =>
            e.type === "pool.scale" && e.data.reason === "unschedulable" && (e.data.unschedulable ?? 0) > 0,
        ),
      20_000,
    );
    expect(decision.type === "pool.scale" && decision.data.create).toBe(0);
    const waitingNames = new Set(full.waiting.map((p) => p.metadata?.name));
    // And it stays at that: 3 Ready (one of them a pod that waited) and 1 still waiting, 4 in all.
    const after = await waitFor(
      "a waiting pod scheduled and Ready",
      async () => {
        const pods = await live();
        const ready = pods.filter(isPodReady);
        return ready.some((p) => waitingNames.has(p.metadata?.name)) && ready.length === 3 ? pods : undefined;
      },
      30_000,
    );
    expect(after).toHaveLength(4);
    expect(after.filter(unschedulable)).toHaveLength(1);
    expect(
      events
        .slice(seen)
        .filter((e) => e.type === "pod.created" || (e.type === "pool.scale" && e.data.create > 0)),
    ).toEqual([]);
  });
});
