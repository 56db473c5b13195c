import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgentReplica } from "../../devstack/agents.ts";
import {
  exec,
  type FaultStack,
  LEADER_LEASE,
  leakCheck,
  outcome,
  podNames,
  recordCase,
  startFaultStack,
  waitFor,
} from "./support.ts";

// Fault 2: the replica holding the pool-leader Lease is SIGKILLed.
const LEADER_S = 3;
let f: FaultStack;

beforeAll(async () => {
  f = await startFaultStack({
    poolSize: 3,
    agentsPerRegion: 2,
    leaseTtlSeconds: 5,
    agentEnv: { LEADER_LEASE_SECONDS: String(LEADER_S), LOG_LEVEL: "info" },
  });
}, 90_000);
afterAll(async () => {
  await f?.close();
}, 60_000);

async function leaderHolder(): Promise<string> {
  const l = await f.coordination.readNamespacedLease({ name: LEADER_LEASE, namespace: f.namespace });
  return l.spec?.holderIdentity ?? "";
}

describe("fault: the pool leader killed", () => {
  it("another replica takes over within one leader lease duration and keeps the pool at size", async () => {
    const leader = await waitFor("a pool leader", async () => (await leaderHolder()) || undefined, 15_000);
    const victim = f.stack.agents.find((a) => a.agentId === leader);
    expect(victim, `leader ${leader} is one of the stack's replicas`).toBeDefined();
    if (!victim) return;
    const killedAt = Date.now();
    victim.kill();
    // A request racing the kill may still be routed to the dead socket before the edge has seen
    // it close: it must then fail cleanly (502 tunnel_closed), never hang.
    const racing = await exec(f, "echo racing-the-kill", 10, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const during = await exec(f, "echo served-without-leader", 10, 20_000);
    const duringAt = Date.now();
    const newLeader = await waitFor(
      "a new leader",
      async () => {
        const h = await leaderHolder();
        return h && h !== leader ? h : undefined;
      },
      LEADER_S * 1000 * 3,
      50,
    );
    const takeoverMs = Date.now() - killedAt;

    // The new leader's controller keeps the pool at size: a deleted pod is replaced.
    const before = await podNames(f);
    const doomed = before[0] ?? "";
    const deletedAt = Date.now();
    await f.core.deleteNamespacedPod({ name: doomed, namespace: f.namespace, gracePeriodSeconds: 0 });
    const replacedMs = await waitFor(
      "the deleted pod to be replaced",
      async () => {
        const now = await podNames(f);
        const fresh = now.filter((n) => !before.includes(n));
        return !now.includes(doomed) && fresh.length >= 1 && now.length === f.poolSize
          ? Date.now() - deletedAt
          : undefined;
      },
      30_000,
    );
    const leaksWithOneReplica = await leakCheck(f);

    const restarted = await startAgentReplica({
      agentId: victim.agentId,
      env: f.stack.agentEnvFor(f.stack.regions[0] ?? "local", victim.agentId),
      logDir: join(f.dir, "logs"),
    });
    f.stack.agents.splice(f.stack.agents.indexOf(victim), 1, restarted);
    const after = await Promise.all([1, 2].map((i) => exec(f, `echo after-${i}`, 10, 20_000)));
    const leaks = await leakCheck(f);
    const leaderAtEnd = await leaderHolder();

    // client-go semantics: a follower looks every duration/6 and counts the duration from when it
    // observed the last renewal, so the worst case after the kill is duration + 2·(duration/6).
    const boundMs = LEADER_S * 1000 * (1 + 2 / 6) + 500;
    recordCase("2-pool-leader-killed", {
      setup: { poolSize: f.poolSize, agents: 2, leaderLeaseSeconds: LEADER_S },
      killedLeader: leader,
      newLeader,
      takeoverAfterKillMs: takeoverMs,
      takeoverBoundMs: boundMs,
      callerRacingKill: outcome(racing),
      callerDuringTakeover: { ...outcome(during), answeredAfterKillMs: duringAt - killedAt },
      deletedPodAfterTakeover: doomed,
      deletedPodReplacedMs: replacedMs,
      leakCheckWithOneReplica: leaksWithOneReplica,
      afterRestart: after.map(outcome),
      leaderAtEnd,
      leakCheck: leaks,
    });

    if (racing.status !== 200) expect([racing.status, racing.code]).toEqual([502, "tunnel_closed"]);
    expect(during.status).toBe(200);
    expect(newLeader).not.toBe(leader);
    expect(takeoverMs).toBeLessThanOrEqual(boundMs);
    expect(leaksWithOneReplica.ok).toBe(true);
    for (const a of after) expect(a.status).toBe(200);
    // The restarted replica does not steal leadership from a leader that renews.
    expect(leaderAtEnd).toBe(newLeader);
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 90_000);
});
