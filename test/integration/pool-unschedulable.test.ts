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
  it("pods beyond the node stay Unschedulable, growth stops, and they start when room frees", {
    timeout: 90_000,
  }, async () => {
    const started = await startPool(cluster, {
      AGENT_ID: "unsched-0",
      POOL_SIZE: "5",
      LEADER_LEASE_SECONDS: "3",
    });
    pool = started.pool;
    const events = started.events;

    // The pool wants 5; the node holds 3. However many it started at once (its start limit), the
    // ones beyond the node wait, and while one waits the leader decides to add none.
    let most = 0;
    const full = await waitFor(
      "3 Ready, the rest Unschedulable, growth stopped",
      async () => {
        const pods = await live();
        most = Math.max(most, pods.length);
        const ready = pods.filter(isPodReady);
        const waiting = pods.filter(unschedulable);
        const stopped = events.some(
          (e) =>
            e.type === "pool.scale" && e.data.reason === "unschedulable" && (e.data.unschedulable ?? 0) > 0,
        );
        return ready.length === 3 &&
          waiting.length >= 1 &&
          ready.length + waiting.length === pods.length &&
          stopped
          ? { ready, waiting }
          : undefined;
      },
      30_000,
    );
    expect(full.waiting[0]?.status?.conditions?.find((c) => c.type === "PodScheduled")?.message).toMatch(
      /^0\/1 nodes are available: 1 Insufficient cpu\./,
    );

    // One Ready pod goes: its room goes to a pod that waited (growth may then resume, as it should,
    // and the new pods wait in turn).
    const gone = full.ready[0]?.metadata?.name ?? "";
    await cluster.clients.core.deleteNamespacedPod({ name: gone, namespace: cluster.namespace });
    const waitingNames = new Set(full.waiting.map((p) => p.metadata?.name));
    await waitFor(
      "a waiting pod scheduled and Ready",
      async () => {
        const pods = await live();
        most = Math.max(most, pods.length);
        const ready = pods.filter(isPodReady);
        return ready.some((p) => waitingNames.has(p.metadata?.name)) && ready.length === 3;
      },
      30_000,
    );
    // Never a pod added while one waited, never more than the pool wants.
    const grew = events.filter(
      (e) => e.type === "pool.scale" && e.data.create > 0 && (e.data.unschedulable ?? 0) > 0,
    );
    expect(grew).toEqual([]);
    expect(most).toBeLessThanOrEqual(5);
  });
});
