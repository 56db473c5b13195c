import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { PoolEvent, PoolEventOf } from "../../shared/events.ts";
import { AgentProcess, type HarnessMessage } from "../support/agent-process.ts";
import { expectExclusiveUses } from "../support/exclusive-uses.ts";
import {
  type LeaseCluster,
  poolView,
  startLeaseCluster,
  startPool,
  waitFor,
  waitForSettledPool,
} from "../support/lease-cluster.ts";

// The elastic pool against devcluster: three agent replicas as OS processes (real client-node,
// real exec server in the pods), the leader's controller growing the pool from the demand every
// replica publishes on its own Lease and shrinking it after low demand — while 300 acquisitions
// run, with the leader SIGKILLed in the middle.
let cluster: LeaseCluster;
let agents: AgentProcess[] = [];

const POOL_SIZE = 3;
const MAX_PODS = 12;

beforeAll(async () => {
  cluster = await startLeaseCluster("pool-elastic");
}, 60_000);

afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
  agents = [];
});

afterAll(async () => {
  await cluster?.close();
});

function scaleEvents(events: PoolEvent[]): Array<PoolEventOf<"pool.scale">> {
  return events.filter((e): e is PoolEventOf<"pool.scale"> => e.type === "pool.scale");
}

describe("elastic pool, three replicas", () => {
  it("scales up and down while 300 acquisitions run, survives the leader's death, never two holders, no leak", async () => {
    const env = cluster.agentEnv({
      POOL_SIZE: String(POOL_SIZE),
      POOL_MAX_PODS: String(MAX_PODS),
      POOL_SCALE_DOWN_AFTER_SECONDS: "3",
      RECYCLE: "scrub",
      LEASE_TTL_SECONDS: "6",
      LEADER_LEASE_SECONDS: "3",
      QUEUE_TIMEOUT_SECONDS: "40",
    });
    agents = await Promise.all(
      ["e1", "e2", "e3"].map((id) => AgentProcess.start(`${id}-${Date.now() % 100000}`, env)),
    );
    await waitForSettledPool(cluster, POOL_SIZE, 30_000);
    const snaps = await Promise.all(agents.map((a) => a.snapshot()));
    const leaderIdx = snaps.findIndex((s) => s.leader === true);
    expect(leaderIdx).toBeGreaterThanOrEqual(0);
    const leader = agents[leaderIdx] as AgentProcess;
    const workers = agents.filter((a) => a !== leader);

    // Peak pods, sampled from the API while the acquisitions run.
    let peakLive = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const v = await poolView(cluster).catch(() => undefined);
        if (v) peakLive = Math.max(peakLive, v.live.length);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const results: HarnessMessage[] = [];
    const wave = (from: number, n: number) =>
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        const a = workers[i % workers.length] as AgentProcess;
        const id = `c${i}`;
        return a
          .request(
            { cmd: "acquire", id, tenant: `t${i % 6}`, requestId: id, holdMs: 300, probe: true },
            "result",
            90_000,
          )
          .then((m) => {
            results.push(m);
            return m;
          });
      });

    // Wave 1 grows the pool; the pause lets it shrink again (scale-down after 3 s of low demand).
    await Promise.all(wave(0, 150));
    const firstScaleDown = await waitFor(
      "a scale-down after wave 1",
      () => scaleEvents(leader.events).find((e) => e.data.remove > 0),
      30_000,
      100,
    );
    await waitForSettledPool(cluster, POOL_SIZE, 30_000);
    // Wave 2: the leader dies as it starts (the pool is small again, the queues deep); a new leader
    // must take over and grow the pool for it.
    const second = wave(150, 150);
    await waitFor("wave 2 under way", () => results.length >= 153, 60_000, 20);
    leader.kill("SIGKILL");
    const killedAt = Date.now();
    await leader.exited;
    await Promise.all(second);
    sampling = false;
    await sampler;

    // Every acquisition was served (the queue timeout is long enough for this load).
    const served = results.filter((r) => r.ok === true);
    const failed = results.filter((r) => r.ok !== true);
    expect(failed.map((r) => r.code)).toEqual([]);
    expect(served.length).toBe(300);

    expectExclusiveUses(served);

    // It scaled: more pods than the warm target, never more than POOL_MAX_PODS.
    const allScale = agents.flatMap((a) => scaleEvents(a.events));
    expect(peakLive).toBeGreaterThan(POOL_SIZE + 2);
    expect(peakLive).toBeLessThanOrEqual(MAX_PODS + POOL_SIZE); // + pods still terminating
    for (const e of allScale) expect(e.data.total).toBeLessThanOrEqual(MAX_PODS);
    expect(firstScaleDown.data.reason).toBe("scale down");
    // A survivor took over after the old leader died...
    const survivors = workers;
    expect(
      survivors.some((a) =>
        a.events.some((e) => e.type === "pool.leader" && e.data.leader && Date.parse(e.at) > killedAt),
      ),
    ).toBe(true);
    // The other replicas' queues reached the leader (published demand): some decision saw queued > 0
    // although no caller queued on the leader itself (it served none).
    expect(allScale.some((e) => e.data.queued > 0)).toBe(true);
    expect(leader.events.filter((e) => e.type === "queue.entered")).toEqual([]);
    expect(agents.flatMap((a) => a.events).filter((e) => e.type === "lease.lost")).toEqual([]);

    // No leak: back to POOL_SIZE free pods, every pod with its Lease and every Lease with its pod.
    const end = await waitForSettledPool(cluster, POOL_SIZE, 40_000);
    // ...and went on scaling: it grew for wave 2 or (if the old leader had already grown the pool
    // before dying) shrank it back afterwards.
    const newLeaderScaled = survivors.some((a) =>
      scaleEvents(a.events).some(
        (e) => (e.data.create > 0 || e.data.remove > 0) && Date.parse(e.at) > killedAt,
      ),
    );
    expect(newLeaderScaled).toBe(true);
    const podNames = end.live.map((p) => p.metadata?.name).sort();
    expect(end.leases.map((l) => l.metadata?.name).sort()).toEqual(podNames);
    console.log(
      `elastic: peak ${peakLive} pods, ${allScale.length} scale events, first scale-down ${firstScaleDown.data.remove} pods, settled ${Date.now() - killedAt} ms after the leader died`,
    );
    await Promise.all(survivors.map((a) => a.stop()));
    agents = [];
  }, 240_000);

  it("a create the API refuses: the pool stops growing, backs off (doubling) and says why", async () => {
    // A label value the API server refuses (422 Invalid): every create is refused.
    const template = JSON.parse(
      readFileSync(new URL("../../k8s/base/sandbox-pod-template.json", import.meta.url), "utf8"),
    ) as { metadata: { labels?: Record<string, string> } };
    template.metadata.labels = {
      ...(template.metadata.labels ?? {}),
      "pi-sandbox-runtime/broken": "not a valid value!",
    };
    const path = join(cluster.dc.dir, "refused-template.json");
    writeFileSync(path, JSON.stringify(template));
    // Above what an earlier case left in the namespace, so the pool must create.
    const liveBefore = (await poolView(cluster)).live.length;
    const { pool, events } = await startPool(cluster, {
      AGENT_ID: "refused",
      POOL_SIZE: String(liveBefore + 2),
      LEADER_LEASE_SECONDS: "3",
      SANDBOX_POD_TEMPLATE: path,
    });
    try {
      await waitFor("leadership", () => pool.isLeader, 30_000, 20);
      const refused = await waitFor(
        "three refusals",
        () => {
          const r = scaleEvents(events).filter((e) => e.data.reason === "create refused");
          return r.length >= 3 ? r : undefined;
        },
        20_000,
        50,
      );
      expect(refused[0]?.data.refusal).toMatch(/^422: /);
      expect(refused.map((e) => e.data.backoffMs)).toEqual([1_000, 2_000, 4_000]);
      // Between refusals it did not try: the gaps follow the backoff.
      const gaps = refused.slice(1).map((e, i) => Date.parse(e.at) - Date.parse(refused[i]?.at ?? ""));
      expect(gaps[0]).toBeGreaterThanOrEqual(900);
      expect(gaps[1]).toBeGreaterThanOrEqual(1_900);
      expect(scaleEvents(events).some((e) => e.data.reason === "backoff")).toBe(true);
      expect((await poolView(cluster)).live.length).toBe(liveBefore);
    } finally {
      await pool.close();
    }
  }, 60_000);
});
