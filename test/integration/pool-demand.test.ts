import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";
import {
  DemandPublisher,
  DemandReader,
  demandLeaseName,
  parseDemand,
  type ReplicaDemand,
} from "../../cluster-agent/pool/demand.ts";
import { createLogger } from "../../cluster-agent/telemetry/logger.ts";
import { type LeaseCluster, startLeaseCluster, waitFor } from "../support/lease-cluster.ts";

// Queue demand published by each replica on its own Lease and summed by the leader, against
// devcluster (real Lease CAS, real list by label), with short intervals.
let cluster: LeaseCluster;

beforeAll(async () => {
  cluster = await startLeaseCluster("pool-demand");
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

const log = createLogger({ level: "silent" });
const opts = (agentId: string) => ({
  clients: makeClients(cluster.dc.kubeConfig()),
  namespace: cluster.namespace,
  agentId,
  log,
  intervalMs: 100,
  heartbeatMs: 300,
});

describe("published queue demand", () => {
  it("the leader sums the other replicas' fresh demand and ignores one that stopped publishing", async () => {
    const a: ReplicaDemand = { queued: 3, arrivalsPerSecond: 2, tenants: { x: 2, y: 1 } };
    const b: ReplicaDemand = { queued: 5, arrivalsPerSecond: 1, tenants: { x: 5 } };
    const pa = new DemandPublisher(opts("agent-a"), () => a);
    const pb = new DemandPublisher(opts("agent-b"), () => b);
    // The leader's own numbers never come through its Lease (it reads them first-hand).
    const pLeader = new DemandPublisher(opts("leader"), () => ({
      queued: 99,
      arrivalsPerSecond: 9,
      tenants: {},
    }));
    const reader = new DemandReader(opts("leader"));
    for (const p of [pa, pb, pLeader]) p.start();
    reader.start();
    try {
      await waitFor("both replicas seen", () => reader.others().replicas === 2, 10_000, 50);
      expect(reader.others()).toEqual({
        queued: 8,
        arrivalsPerSecond: 3,
        tenants: { x: 7, y: 1 },
        replicas: 2,
      });
      // A change is written within an interval.
      a.queued = 0;
      await waitFor("a's new depth", () => reader.others().queued === 5, 5_000, 50);
      // The Lease has no holder: nothing may mistake it for a held pod.
      const lease = await cluster.clients.coordination.readNamespacedLease({
        name: demandLeaseName("agent-a"),
        namespace: cluster.namespace,
      });
      expect(lease.spec?.holderIdentity).toBeUndefined();
      // b's replica goes away: its Lease stays, unchanged; after 2 heartbeats it no longer counts.
      pb.stop();
      const stoppedAt = Date.now();
      await waitFor("b ignored", () => reader.others().replicas === 1, 5_000, 50);
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(400);
      expect(reader.others().queued).toBe(0);
    } finally {
      for (const p of [pa, pb, pLeader]) p.stop();
      reader.stop();
    }
  }, 30_000);

  it("reads only well-formed annotations; lease names are DNS-safe", () => {
    expect(parseDemand('{"queued":2,"arrivalsPerSecond":0.5,"tenants":{"t":2,"u":0}}')).toEqual({
      queued: 2,
      arrivalsPerSecond: 0.5,
      tenants: { t: 2 },
    });
    for (const bad of [undefined, "", "{", '{"queued":-1,"arrivalsPerSecond":0}', '{"queued":"x"}'])
      expect(parseDemand(bad)).toBeUndefined();
    expect(demandLeaseName("Agent_1.x-")).toBe("pi-sandbox-agent-agent-1.x");
  });
});
