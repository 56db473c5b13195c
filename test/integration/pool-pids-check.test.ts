// Issue 25 item 4: the agent checks once whether sandbox pods have a process limit. A devcluster
// whose kubelet has no podPidsLimit (-1, what a real kubelet does by default) runs pods whose cgroup
// says pids.max = max: the check, through the real http executor in a real runc pod, warns once,
// emits pod.pids (the metric) and reports it for /v1/pool. (The limited case — devcluster's default
// 1024 — is asserted through the whole stack in test/e2e/stack-evictions.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { PidsLimitCheck } from "../../cluster-agent/pids-check.ts";
import type { PoolEvent } from "../../shared/events.ts";
import { type LeaseCluster, startLeaseCluster, startPool, waitFor } from "../support/lease-cluster.ts";

let cluster: LeaseCluster;
let pool: AgentPool | undefined;
let check: PidsLimitCheck | undefined;

beforeAll(async () => {
  cluster = await startLeaseCluster("pool-pids", { podPidsLimit: -1 });
}, 60_000);

afterAll(async () => {
  check?.stop();
  await pool?.close();
  await cluster?.close();
}, 60_000);

describe("the sandbox pids limit check", () => {
  it("a node without podPidsLimit: pids.max = max, one warn line, pod.pids unlimited (the metric's event), checked once", async () => {
    const warnings: Array<{ msg: string; pidsMax?: string }> = [];
    const started = await startPool(cluster, { POOL_SIZE: "2", LEASE_TTL_SECONDS: "10" });
    pool = started.pool;
    const events: PoolEvent[] = started.events;
    check = new PidsLimitCheck({
      executor: new HttpExecutor({ poolToken: cluster.poolToken }),
      store: pool.caches,
      bus: pool.bus,
      log: { warn: (obj, msg) => void warnings.push({ msg, ...(obj as { pidsMax?: string }) }) },
      namespace: cluster.namespace,
    });
    const result = await waitFor("the check ran", async () => check?.result, 60_000);
    expect(result).toMatchObject({
      pidsMax: "max",
      unlimited: true,
      pod: expect.stringMatching(/^sandbox-/),
    });
    expect(events.filter((e) => e.type === "pod.pids").map((e) => e.data)).toEqual([
      { pidsMax: "max", unlimited: true },
    ]);
    // Once: the second pod turning Ready is not checked again.
    await waitFor(
      "both pods ready",
      async () => events.filter((e) => e.type === "pod.ready").length >= 2,
      60_000,
    );
    expect(warnings.filter((w) => /no process limit/.test(w.msg))).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/podPidsLimit/);
  }, 120_000);
});
