import { describe, expect, it } from "vitest";
import { burstGoals } from "../../bench/burst-goals.ts";
import type { BenchRow } from "../../bench/types.ts";

function burst(name: string, extra: Record<string, number | string>): BenchRow {
  return {
    name,
    n: 120,
    p50Ms: 6000,
    p99Ms: 13000,
    extra: {
      queueTimeouts: 0,
      otherErrors: 0,
      p99OverStackCpu: 1.08,
      p99OverMachineFloor: 1.5,
      firstNewPodReadyMs: 700,
      apiGetP99Ms: 80,
      apiGetFailed: 0,
      agentControlPlaneFailures: "none",
      ...extra,
    },
  };
}

const verdicts = (rows: BenchRow[]) => burstGoals(rows).map((g) => [g.row, g.goal, g.met] as const);

describe("issue 30's goals read off the elastic rows", () => {
  it("judges each goal of a burst on its own, the as-written floor included", () => {
    const goals = verdicts([burst("burst/1-tenant", {})]);
    expect(goals).toEqual([
      ["burst/1-tenant", "served in full", true],
      ["burst/1-tenant", "p99 ≤ 1.25× stack CPU ÷ cores (pacing)", true],
      ["burst/1-tenant", "p99 ≤ 1.25× start-up floor (as written)", false],
      ["burst/1-tenant", "first new pod Ready ≤ 1500 ms", true],
      ["burst/1-tenant", "API p99 < 1000 ms, no control-plane failure", true],
    ]);
  });

  it("a queue_timeout, a late first pod, a failed renewal or unfair waits each fail their goal", () => {
    const failed = burstGoals([
      burst("burst/6-tenants", {
        queueTimeouts: 1,
        firstNewPodReadyMs: 1501,
        agentControlPlaneFailures: "renew_leader_lease_failedx1",
        fairnessMaxMin: 2.1,
        p99OverStackCpu: 1.26,
      }),
    ])
      .filter((g) => !g.met)
      .map((g) => g.goal);
    expect(failed).toEqual([
      "served in full",
      "p99 ≤ 1.25× stack CPU ÷ cores (pacing)",
      "p99 ≤ 1.25× start-up floor (as written)",
      "first new pod Ready ≤ 1500 ms",
      "API p99 < 1000 ms, no control-plane failure",
      "median waits within 2×",
    ]);
  });

  it("a figure the row lacks is not met, and scale-down is held to 2 minutes", () => {
    const lacking = burst("burst/1-tenant", {});
    delete lacking.extra?.p99OverStackCpu;
    const back = (ms: number): BenchRow => ({
      name: "scale-down/back-to-pool-size",
      n: 1,
      p50Ms: ms,
      p99Ms: ms,
    });
    const goals = burstGoals([lacking, back(61_000), back(121_000)]);
    expect(goals.find((g) => g.goal.includes("pacing"))).toMatchObject({ value: "not measured", met: false });
    expect(goals.filter((g) => g.row.startsWith("scale-down")).map((g) => g.met)).toEqual([true, false]);
    expect(verdicts([{ name: "throughput/replace-elastic", n: 1, p50Ms: 1, p99Ms: 1 }])).toEqual([]);
  });
});
