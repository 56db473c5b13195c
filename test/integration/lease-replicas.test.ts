import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PoolEvent, PoolEventOf } from "../../shared/events.ts";
import { AgentProcess, type HarnessMessage } from "../support/agent-process.ts";
import { expectExclusiveUses } from "../support/exclusive-uses.ts";
import {
  type LeaseCluster,
  poolView,
  startLeaseCluster,
  waitFor,
  waitForSettledPool,
} from "../support/lease-cluster.ts";

// Three agent replicas as separate OS processes (test/support/agent-harness.ts), real client-node,
// devcluster with real bubblewrap sandboxes running the real exec server.
let cluster: LeaseCluster;
let agents: AgentProcess[] = [];

async function startReplicas(env: Record<string, string>): Promise<AgentProcess[]> {
  const started = await Promise.all(
    ["r1", "r2", "r3"].map((id) => AgentProcess.start(`${id}-${Date.now() % 100000}`, cluster.agentEnv(env))),
  );
  agents.push(...started);
  return started;
}

async function stopAll(): Promise<void> {
  await Promise.all(agents.map((a) => a.stop()));
  agents = [];
}

beforeAll(async () => {
  cluster = await startLeaseCluster("lease-replicas");
}, 60_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
  await cluster?.close();
});

describe("three replicas, one pool", () => {
  it("300 concurrent acquisitions over 8 pods: never two holders on one pod", async () => {
    const replicas = await startReplicas({
      POOL_SIZE: "8",
      RECYCLE: "scrub",
      LEASE_TTL_SECONDS: "5",
      LEADER_LEASE_SECONDS: "3",
      QUEUE_TIMEOUT_SECONDS: "25",
      TENANT_MAX_LEASES: "1000",
      // A fixed pool of 8 (POOL_SIZE counts free pods; the cap keeps held ones from adding more).
      POOL_MAX_PODS: "8",
    });
    const tStart = Date.now();
    await waitForSettledPool(cluster, 8, 30_000);
    const tSettled = Date.now();

    const total = 300;
    const results: HarnessMessage[] = [];
    const pending: Array<Promise<HarnessMessage>> = [];
    for (let i = 0; i < total; i++) {
      const a = replicas[i % 3] as AgentProcess;
      const id = `c${i}`;
      pending.push(
        a
          .request(
            { cmd: "acquire", id, tenant: `t${i % 5}`, requestId: id, holdMs: 20, probe: true },
            "result",
            60_000,
          )
          .then((m) => {
            results.push(m);
            return m;
          }),
      );
    }
    await Promise.all(pending);
    const tDone = Date.now();

    // Every acquisition was served or ended in queue_timeout.
    const served = results.filter((r) => r.ok === true);
    const timedOut = results.filter((r) => r.ok === false);
    for (const r of timedOut) expect(r.code).toBe("queue_timeout");
    expect(served.length + timedOut.length).toBe(total);
    expect(served.length).toBeGreaterThan(0);

    expectExclusiveUses(served);

    // Check from the events of all replicas: each acquisition of a pod comes after the previous holder
    // had stopped using it (lease.released carries the time its holder stopped), fences strictly increase.
    const events: PoolEvent[] = replicas.flatMap((a) => a.events);
    const acquired = events.filter((e): e is PoolEventOf<"lease.acquired"> => e.type === "lease.acquired");
    const released = new Map(
      events
        .filter((e): e is PoolEventOf<"lease.released"> => e.type === "lease.released")
        .map((e) => [`${e.pod}#${String(e.data?.fence)}`, e]),
    );
    expect(acquired.length).toBe(served.length);
    const acqByPod = new Map<string, PoolEventOf<"lease.acquired">[]>();
    for (const e of acquired) {
      expect(e.requestId).toBeTruthy();
      const list = acqByPod.get(e.pod ?? "") ?? [];
      list.push(e);
      acqByPod.set(e.pod ?? "", list);
    }
    let overlaps = 0;
    for (const [pod, list] of acqByPod) {
      list.sort((a, b) => Number(a.data?.fence) - Number(b.data?.fence));
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1] as PoolEventOf<"lease.acquired">;
        const cur = list[i] as PoolEventOf<"lease.acquired">;
        const rel = released.get(`${pod}#${String(prev.data?.fence)}`);
        expect(rel, `release of ${pod} fence ${String(prev.data?.fence)}`).toBeDefined();
        if (rel && Date.parse(String(rel.data?.usedUntil)) > Date.parse(cur.at)) overlaps++;
      }
    }
    expect(overlaps).toBe(0);
    expect(events.filter((e) => e.type === "lease.lost")).toEqual([]);

    // At the end every Lease is free and 8 pods are Ready.
    await waitForSettledPool(cluster, 8, 20_000);
    const conflicts = events.filter((e) => e.type === "lease.conflict").length;
    console.log(
      `pool ready ${tSettled - tStart} ms, 300 acquisitions ${tDone - tSettled} ms, settle ${Date.now() - tDone} ms; served ${served.length}, queue_timeout ${timedOut.length}, 409s ${conflicts} (${(conflicts / Math.max(1, served.length)).toFixed(2)}/acquisition)`,
    );
    await stopAll();
  }, 120_000);

  it("SIGKILL of a replica holding leases: they expire, the pods are recycled; SIGKILL of the leader: another takes over", async () => {
    const ttl = 4;
    const leaderTtl = 3;
    const replicas = await startReplicas({
      POOL_SIZE: "8",
      RECYCLE: "replace",
      LEASE_TTL_SECONDS: String(ttl),
      LEADER_LEASE_SECONDS: String(leaderTtl),
      QUEUE_TIMEOUT_SECONDS: "10",
      TENANT_MAX_LEASES: "1000",
      // A fixed pool of 8 (POOL_SIZE counts free pods; the cap keeps held ones from adding more).
      POOL_MAX_PODS: "8",
    });
    await waitForSettledPool(cluster, 8, 30_000);
    const snaps = await Promise.all(replicas.map((a) => a.snapshot()));
    const leaderIdx = snaps.findIndex((s) => s.leader === true);
    expect(leaderIdx).toBeGreaterThanOrEqual(0);
    const leader = replicas[leaderIdx] as AgentProcess;
    const victim = replicas[(leaderIdx + 1) % 3] as AgentProcess;
    const survivor = replicas[(leaderIdx + 2) % 3] as AgentProcess;

    // The victim takes two leases and holds them; then it dies without releasing.
    const held = await Promise.all(
      ["k1", "k2"].map((id) =>
        victim.request({ cmd: "acquire", id, tenant: "t", requestId: id, hold: true }, "result", 10_000),
      ),
    );
    const victimPods = held.map((m) => String(m.pod));
    expect(held.every((m) => m.ok === true)).toBe(true);
    victim.kill("SIGKILL");
    const killedAt = Date.now();
    await victim.exited;

    // The leader sees them unchanged for the TTL and recycles them (expired, never handed out again).
    await waitFor(
      "lease.expired for both pods",
      () => victimPods.every((p) => leader.events.some((e) => e.type === "lease.expired" && e.pod === p)),
      ttl * 1000 + 5_000,
      50,
    );
    const expiredAfter = Date.now() - killedAt;
    expect(expiredAfter).toBeGreaterThanOrEqual(ttl * 1000 - (ttl * 1000) / 3 - 200);
    await waitFor(
      "the victim's pods gone",
      async () => {
        const v = await poolView(cluster);
        return (
          victimPods.every((p) => !v.live.some((x) => x.metadata?.name === p)) &&
          victimPods.every((p) => !v.leases.some((l) => l.metadata?.name === p))
        );
      },
      10_000,
    );
    // The events name the request behind the recycle: expiry and the pod's deletion carry the dead holder's request id.
    await waitFor(
      "pod.deleted for the victim's pods",
      () => victimPods.every((p) => leader.events.some((e) => e.type === "pod.deleted" && e.pod === p)),
      10_000,
      50,
    );
    for (const [i, p] of victimPods.entries()) {
      const id = held[i]?.id;
      expect(leader.events.find((e) => e.type === "lease.expired" && e.pod === p)?.requestId).toBe(id);
      expect(leader.events.find((e) => e.type === "pod.deleted" && e.pod === p)?.requestId).toBe(id);
    }
    for (const a of [leader, survivor]) {
      expect(a.events.some((e) => e.type === "lease.acquired" && victimPods.includes(e.pod ?? ""))).toBe(
        false,
      );
    }
    await waitForSettledPool(cluster, 8, 30_000);

    // Now kill the leader: the only other replica left takes over once the record it observed has
    // not changed for one lease duration (client-go semantics), and not before.
    leader.kill("SIGKILL");
    const leaderKilledAt = Date.now();
    await leader.exited;
    const dead = await cluster.clients.coordination.readNamespacedLease({
      name: "pi-sandbox-pool-leader",
      namespace: cluster.namespace,
    });
    expect(dead.spec?.holderIdentity).toBe(leader.agentId);
    const lastRenew = Date.parse(String(dead.spec?.renewTime));
    const isTakeover = (e: PoolEvent) =>
      e.type === "pool.leader" && e.data?.leader === true && Date.parse(e.at) >= leaderKilledAt - 50;
    await waitFor("a new leader", () => survivor.events.some(isTakeover), leaderTtl * 1000 + 4_000, 20);
    const takeoverAt = Date.parse(survivor.events.find(isTakeover)?.at ?? "");
    console.log(
      `expiry recycle after ${expiredAfter} ms (TTL ${ttl} s); leader takeover ${takeoverAt - leaderKilledAt} ms after the kill, ${takeoverAt - lastRenew} ms after the dead leader's last renewal (lease ${leaderTtl} s)`,
    );
    // Never before a full duration after the last renewal; then within two follower polls (duration/6 each) plus 1.5 s of slack for a loaded CI machine.
    expect(takeoverAt - lastRenew).toBeGreaterThanOrEqual(leaderTtl * 1000 - 50);
    expect(takeoverAt - lastRenew).toBeLessThanOrEqual(leaderTtl * 1000 + (2 * leaderTtl * 1000) / 6 + 1_500);
    const leaderLease = await cluster.clients.coordination.readNamespacedLease({
      name: "pi-sandbox-pool-leader",
      namespace: cluster.namespace,
    });
    expect(leaderLease.spec?.holderIdentity).toBe(survivor.agentId);
    expect(leaderLease.spec?.leaseTransitions ?? 0).toBeGreaterThan(dead.spec?.leaseTransitions ?? 0);
    // The new leader keeps the pool: a pod deleted now is replaced.
    const v = await poolView(cluster);
    const victimPod = v.live[0]?.metadata?.name ?? "";
    await cluster.clients.core.deleteNamespacedPod({ name: victimPod, namespace: cluster.namespace });
    await waitFor(
      "replacement under the new leader",
      async () => {
        const w = await poolView(cluster);
        return !w.live.some((p) => p.metadata?.name === victimPod) && w.readyFree.length === 8;
      },
      20_000,
      200,
    );
    await stopAll();
  }, 120_000);
});
