import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  exec,
  type FaultStack,
  fileAppears,
  heldLease,
  leakCheck,
  outcome,
  podNames,
  recordCase,
  startFaultStack,
  waitFor,
} from "./support.ts";

// Fault 5: the sandbox pod a caller's command runs in is deleted at once (gracePeriodSeconds=0).
let f: FaultStack;

beforeAll(async () => {
  f = await startFaultStack({ poolSize: 3, agentsPerRegion: 2, leaseTtlSeconds: 5 });
}, 90_000);
afterAll(async () => {
  await f?.close();
}, 60_000);

describe("fault: a pod killed mid-exec", () => {
  it("the caller gets sandbox_failed quickly, the lease is released, the pool refills", async () => {
    const marker = `/tmp/started-${randomUUID()}`;
    const inflight = exec(f, `touch ${marker}; echo started; sleep 30`, 40);
    const held = await heldLease(f);
    // The pod goes away only once the command is running in it (its marker file exists).
    await fileAppears(f, held.pod, marker);
    const killedAt = Date.now();
    await f.core.deleteNamespacedPod({ name: held.pod, namespace: f.namespace, gracePeriodSeconds: 0 });
    const caller = await inflight;
    const callerAfterKillMs = Date.now() - killedAt;
    const goneMs = await waitFor(
      `pod ${held.pod} and its Lease to be gone`,
      async () => {
        if ((await podNames(f)).includes(held.pod)) return undefined;
        const leases = await f.coordination.listNamespacedLease({ namespace: f.namespace });
        return leases.items.some((l) => l.metadata?.name === held.pod) ? undefined : Date.now() - killedAt;
      },
      15_000,
    );
    const next = await exec(f, "echo next", 10, 20_000);
    const leaks = await leakCheck(f);

    recordCase("5-pod-killed-mid-exec", {
      setup: { poolSize: f.poolSize, agents: 2, leaseTtlSeconds: 5 },
      killedPod: held.pod,
      callerReceived: outcome(caller),
      callerAfterKillMs,
      podAndLeaseGoneAfterMs: goneMs,
      nextRequest: outcome(next),
      leakCheck: leaks,
    });

    expect(caller.status).toBe(502);
    expect(caller.code).toBe("sandbox_failed");
    expect(caller.requestId).toBe(held.requestId);
    // "Quickly": the pod's death ends the call, not the command's 40 s timeout (nor the relay's).
    expect(callerAfterKillMs).toBeLessThan(30_000);
    expect(next.status).toBe(200);
    expect(next.exitCode).toBe(0);
    expect(next.pod).not.toBe(held.pod);
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 120_000);
});
