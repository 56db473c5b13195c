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
      // b's replica goes away: its Lease stays, unchanged; 2 heartbeats (600 ms) after the reader
      // saw its last write it no longer counts. That write was at most a heartbeat plus one 100 ms
      // tick (400 ms) before the stop, so b still counts for at least 200 ms after it.
      pb.stop();
      const stoppedAt = Date.now();
      await waitFor("b ignored", () => reader.others().replicas === 1, 5_000, 50);
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(200);
      expect(reader.others().queued).toBe(0);
    } finally {
      for (const p of [pa, pb, pLeader]) p.stop();
      reader.stop();
    }
  }, 30_000);

  it("the leader deletes a Lease left unchanged for removeAfterMs, and only that one", async () => {
    const gone = new DemandPublisher(opts("agent-gone"), () => ({
      queued: 1,
      arrivalsPerSecond: 0,
      tenants: {},
    }));
    const live = new DemandPublisher(opts("agent-live"), () => ({
      queued: 2,
      arrivalsPerSecond: 0,
      tenants: {},
    }));
    const reader = new DemandReader({ ...opts("leader-2"), removeAfterMs: 1_500 });
    const exists = (agentId: string) =>
      cluster.clients.coordination
        .readNamespacedLease({ name: demandLeaseName(agentId), namespace: cluster.namespace })
        .then(
          () => true,
          () => false,
        );
    gone.start();
    live.start();
    reader.start();
    try {
      await waitFor(
        "both Leases written",
        async () => (await exists("agent-gone")) && (await exists("agent-live")),
        10_000,
        50,
      );
      // Killed without its shutdown: the Lease stays behind, unchanged.
      gone.stop();
      await waitFor("the abandoned Lease removed", async () => !(await exists("agent-gone")), 10_000, 100);
      // A clean shutdown deletes its own at once.
      const quitter = new DemandPublisher(opts("agent-quits"), () => ({
        queued: 0,
        arrivalsPerSecond: 0,
        tenants: {},
      }));
      quitter.start();
      await waitFor("the quitter's Lease written", () => exists("agent-quits"), 10_000, 50);
      await quitter.withdraw();
      expect(await exists("agent-quits")).toBe(false);
      // The replica that keeps publishing (its heartbeat is 300 ms) is never a candidate.
      expect(await exists("agent-live")).toBe(true);
      await new Promise((r) => setTimeout(r, 2_000));
      expect(await exists("agent-live")).toBe(true);
    } finally {
      gone.stop();
      live.stop();
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
