import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgentReplica } from "../../devstack/agents.ts";
import {
  agentUrlFromLog,
  exec,
  type FaultStack,
  heldLease,
  leakCheck,
  outcome,
  podNames,
  recordCase,
  startFaultStack,
  waitFor,
} from "./support.ts";

// Fault 1: an agent replica is SIGKILLed while it runs a command for a caller.
const TTL_S = 4;
let f: FaultStack;

beforeAll(async () => {
  f = await startFaultStack({
    poolSize: 3,
    agentsPerRegion: 2,
    leaseTtlSeconds: TTL_S,
    agentEnv: { LEADER_LEASE_SECONDS: "4", LOG_LEVEL: "info" },
  });
}, 90_000);
afterAll(async () => {
  await f?.close();
}, 60_000);

describe("fault: an agent replica killed mid-exec", () => {
  it("the caller gets a fast 502, the held lease expires and its pod is recycled, the other replica serves, a restarted replica converges", async () => {
    const inflight = exec(f, "sleep 30", 40);
    const held = await heldLease(f);
    const victim = f.stack.agents.find((a) => a.agentId === held.agentId);
    expect(victim, `holder ${held.agentId} is one of the stack's replicas`).toBeDefined();
    if (!victim) return;
    const killedAt = Date.now();
    victim.kill();
    const caller = await inflight;
    const callerAfterKillMs = Date.now() - killedAt;

    // The other replica keeps serving while the dead one's lease is still held.
    const during = await exec(f, "echo still-serving", 10, 20_000);

    // The lease is not stolen early (observed-time expiry: ≥ 2/3 TTL after the kill, as the
    // survivor may have seen the last renewal up to TTL/3 before it) and the pod is replaced.
    const recycledAfterMs = await waitFor(
      `pod ${held.pod} to be recycled`,
      async () => ((await podNames(f)).includes(held.pod) ? undefined : Date.now() - killedAt),
      TTL_S * 1000 + 15_000,
      50,
    );

    const restarted = await startAgentReplica({
      agentId: victim.agentId,
      env: f.stack.agentEnvFor(f.stack.regions[0] ?? "local", victim.agentId),
      logDir: join(f.dir, "logs"),
    });
    f.stack.agents.splice(f.stack.agents.indexOf(victim), 1, restarted);
    const restartedReadyMs = await waitFor(
      "the restarted replica to be ready",
      async () => {
        const url = agentUrlFromLog(restarted.logFile);
        if (!url) return undefined;
        const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
        return r.status === 200 ? Date.now() - killedAt : undefined;
      },
      30_000,
    );
    // Its tunnel is up again (the log is appended across restarts: a second login line).
    await waitFor(
      "the restarted replica's tunnel login",
      async () =>
        readFileSync(restarted.logFile, "utf8")
          .split("\n")
          .filter((l) => l.includes("tunnel: connected")).length >= 2
          ? true
          : undefined,
      20_000,
    );
    const after = await Promise.all([1, 2, 3].map((i) => exec(f, `echo after-${i}`, 10, 20_000)));
    const leaks = await leakCheck(f);

    recordCase("1-agent-replica-killed-mid-exec", {
      setup: { poolSize: f.poolSize, agents: 2, leaseTtlSeconds: TTL_S },
      killed: { agentId: victim.agentId, heldPod: held.pod, requestId: held.requestId },
      callerReceived: outcome(caller),
      callerAfterKillMs,
      otherReplicaDuringOutage: outcome(during),
      heldLeaseRecycledAfterKillMs: recycledAfterMs,
      restartedReplicaReadyAfterKillMs: restartedReadyMs,
      afterRestart: after.map(outcome),
      leakCheck: leaks,
    });

    expect(caller.status).toBe(502);
    expect(["tunnel_closed", "agent_unavailable"]).toContain(caller.code);
    expect(caller.requestId).toBeTruthy();
    expect(callerAfterKillMs).toBeLessThan(5_000);
    expect(during.status).toBe(200);
    expect(during.exitCode).toBe(0);
    expect(recycledAfterMs).toBeGreaterThanOrEqual(((TTL_S * 2) / 3) * 1000 - 250);
    for (const a of after) {
      expect(a.status).toBe(200);
      expect(a.exitCode).toBe(0);
    }
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 90_000);
});
