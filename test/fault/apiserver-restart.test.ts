import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEntry } from "../../devcluster/apiserver/index.ts";
import { ERROR_STATUS } from "../../shared/errors.ts";
import {
  type CallerOutcome,
  exec,
  type FaultStack,
  leakCheck,
  outcome,
  podNames,
  recordCase,
  sleep,
  startFaultStack,
  waitFor,
} from "./support.ts";

// Fault 3: the devcluster API server goes away and comes back on the same port with its objects
// (stateFile) but without its watch history, so resuming watches get 410 Gone.
const OUTAGE_MS = 3_000;
let f: FaultStack;
const audit: Array<AuditEntry & { at: number }> = [];

beforeAll(async () => {
  f = await startFaultStack({
    poolSize: 3,
    agentsPerRegion: 2,
    leaseTtlSeconds: 6,
    agentEnv: { LEADER_LEASE_SECONDS: "4", LOG_LEVEL: "info" },
    extraSetup: (dir) => ({ apiStateFile: join(dir, "api-state.json") }),
    apiAudit: (e) => audit.push({ ...e, at: Date.now() }),
  });
}, 90_000);
afterAll(async () => {
  await f?.close();
}, 60_000);

/** A clean failure: the documented envelope, a stable code, and the status that code maps to. */
function isCleanFailure(o: CallerOutcome): boolean {
  return (
    o.status !== null &&
    o.status >= 500 &&
    o.status !== 500 &&
    o.code !== null &&
    (ERROR_STATUS as Record<string, number>)[o.code] === o.status &&
    !!o.requestId
  );
}

/** "watch failed; restarting" lines in the agents' logs (WatchedCache's restart with backoff). */
function watchLogLines(): { watchFailures: number } {
  let watchFailures = 0;
  for (const a of f.stack.agents) {
    for (const line of readFileSync(a.logFile, "utf8").split("\n")) {
      if (line.includes("watch failed")) watchFailures++;
    }
  }
  return { watchFailures };
}

describe("fault: the devcluster API server restarted", () => {
  it("requests in the outage fail cleanly or wait, informers recover (410 → relist), then acquire/exec works and nothing leaks", async () => {
    const warm = await exec(f, "echo warm", 10, 20_000);
    const podsBefore = await podNames(f);
    const logBefore = watchLogLines();

    // Holds a lease across the outage: its renewals fail while the server is down.
    const spanning = exec(f, "sleep 5; echo survived", 20, 40_000);
    await sleep(500);
    // Advance the resourceVersion past everything the agents' watches have seen, so that every
    // resuming watch is behind the restarted server's window (410) and must relist.
    const bump = await f.coordination.createNamespacedLease({
      namespace: "default",
      body: { metadata: { name: "fault-rv-bump" }, spec: {} },
    });
    let inOutage: Array<Promise<CallerOutcome>> = [];
    const downAt = Date.now();
    let upAt = 0;
    await f.stack.cluster.restartApi({
      whileDown: async () => {
        inOutage = [1, 2].map((i) => exec(f, `echo in-outage-${i}`, 10, 40_000));
        await sleep(OUTAGE_MS);
      },
    });
    upAt = Date.now();
    const [spanningOut, ...outageOuts] = await Promise.all([spanning, ...inOutage]);
    // The informers' relists: LISTs of the pool's pods and Leases by the agents (the admin
    // identity; the test itself lists nothing between the restart and here). Resuming a watch
    // from a pre-restart resourceVersion gets 410 Gone (the history is not persisted), and
    // client-node answers that with a fresh LIST instead of an error. A watch that failed through
    // the whole outage is in its restart backoff (200 ms doubling, jittered: up to ~3.2 s after a
    // 3 s outage), so wait for the relists (reading only the audit log) rather than a fixed second.
    const relistsOf = (resource: string) =>
      audit.filter(
        (e) =>
          e.at >= upAt &&
          e.verb === "list" &&
          e.namespace === f.namespace &&
          e.user === "devcluster-admin" &&
          e.resource === resource &&
          e.code === 200,
      ).length;
    await waitFor(
      "both agents to relist pods and Leases",
      () => relistsOf("pods") >= 2 && relistsOf("leases") >= 2,
      15_000,
      50,
    ).catch(() => undefined); // the expectations below say which one is missing
    const relistCounts = { pods: relistsOf("pods"), leases: relistsOf("leases") };
    // The pool's own pods may all be used up and replaced across the outage (replace mode; the
    // elastic pool keeps POOL_SIZE *free* pods, so the in-outage callers can take every old one):
    // what proves the restored state is an object nobody touches, the same object (uid) as before.
    const podsSurvived = (await podNames(f)).filter((n) => podsBefore.includes(n)).length;
    const bumpAfter = await f.coordination.readNamespacedLease({
      name: "fault-rv-bump",
      namespace: "default",
    });
    const sameObjectSurvived = bumpAfter.metadata?.uid === bump.metadata?.uid && !!bump.metadata?.uid;

    // Acquire/exec works again (bounded wait: informers restart with backoff).
    const attempts: CallerOutcome[] = [];
    const recoveredMs = await waitFor(
      "an exec to succeed after the restart",
      async () => {
        const r = await exec(f, "echo recovered", 10, 20_000);
        attempts.push(outcome(r));
        return r.status === 200 && r.exitCode === 0 ? Date.now() - upAt : undefined;
      },
      30_000,
      250,
    );
    // The watches work after the restart: a pod deleted now is seen and replaced.
    const before = await podNames(f);
    const doomed = before[0] ?? "";
    await f.core.deleteNamespacedPod({ name: doomed, namespace: f.namespace, gracePeriodSeconds: 0 });
    const replacedMs = await waitFor(
      "the deleted pod to be replaced after the restart",
      async () => {
        const now = await podNames(f);
        return !now.includes(doomed) &&
          now.filter((n) => !before.includes(n)).length >= 1 &&
          now.length === f.poolSize
          ? Date.now() - upAt
          : undefined;
      },
      // The claim is that the watches work again, not how fast: informers restart with backoff, and
      // on a machine busy with other work a replacement pod takes seconds to start.
      90_000,
    );
    const after = await Promise.all([1, 2, 3].map((i) => exec(f, `echo after-${i}`, 10, 20_000)));
    const leaks = await leakCheck(f, 40_000);
    const logAfter = watchLogLines();

    recordCase("3-apiserver-restarted", {
      setup: {
        poolSize: f.poolSize,
        agents: 2,
        leaseTtlSeconds: 6,
        leaderLeaseSeconds: 4,
        outageMs: OUTAGE_MS,
      },
      warm: outcome(warm),
      spanningTheOutage: outcome(spanningOut),
      requestsDuringOutage: outageOuts.map((o) => ({ ...outcome(o) })),
      outageMs: upAt - downAt,
      podsThatSurvivedTheRestart: podsSurvived,
      untouchedLeaseSurvivedWithItsUid: sameObjectSurvived,
      attemptsAfterRestart: attempts,
      firstSuccessAfterRestartMs: recoveredMs,
      podDeletedAfterRestartReplacedMs: replacedMs,
      informerRelistsAfterRestart: relistCounts,
      agentWatchFailuresLogged: logAfter.watchFailures - logBefore.watchFailures,
      after: after.map(outcome),
      leakCheck: leaks,
    });

    expect(warm.status).toBe(200);
    for (const o of [spanningOut, ...outageOuts]) {
      // Either it waited and was served, or it failed with a documented, clean error.
      if (o.status === 200) expect(o.exitCode).toBe(0);
      else expect(isCleanFailure(o), JSON.stringify(outcome(o))).toBe(true);
    }
    for (const o of attempts) {
      if (o.status !== 200) expect(isCleanFailure(o), JSON.stringify(o)).toBe(true);
    }
    expect(sameObjectSurvived).toBe(true);
    // Both agents relisted both caches after the restart (two replicas → at least two each).
    expect(relistCounts.pods).toBeGreaterThanOrEqual(2);
    expect(relistCounts.leases).toBeGreaterThanOrEqual(2);
    // The agents saw their watches fail and restarted them.
    expect(logAfter.watchFailures).toBeGreaterThan(logBefore.watchFailures);
    for (const a of after) {
      expect(a.status).toBe(200);
      expect(a.exitCode).toBe(0);
    }
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 240_000);
});
