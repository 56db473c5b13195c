import type { BenchRow } from "./types.ts";

/**
 * Issue 30's goals, checked on the elastic suite's rows, so "the goals hold in three runs" is read
 * off the bench instead of recomputed by hand. Two p99 measures are checked:
 *
 * - `p99 ≤ 1.25× stack CPU ÷ cores` (pacing): the burst's p99 against all the CPU the stack itself
 *   spent during the burst, over the cores. Near 1 means callers waited on nothing but CPU — the
 *   pool never idled or starved itself while they queued — which is what pacing can deliver;
 * - `p99 ≤ 1.25× the start-up floor` (as the issue wrote it): pods started × one bare start-up's
 *   machine CPU ÷ cores. It leaves out every command's own work beyond its pod's start-up (edge,
 *   agents, Leases, the command), which on devcluster is ~0.5× a start-up, so no pacing meets it
 *   there; it is reported, not hidden (bench/README.md, "Issue 30's goals").
 */
export interface GoalCheck {
  row: string;
  goal: string;
  value: string;
  met: boolean;
}

const P99_OVER = 1.25;
const FIRST_READY_MS = 1500;
const API_P99_MS = 1000;
const FAIRNESS = 2;
const BACK_TO_POOL_MS = 120_000;

const num = (row: BenchRow, key: string): number | undefined => {
  const v = row.extra?.[key];
  return typeof v === "number" ? v : undefined;
};

export function burstGoals(rows: readonly BenchRow[]): GoalCheck[] {
  const out: GoalCheck[] = [];
  const check = (
    row: BenchRow,
    goal: string,
    value: number | undefined,
    met: (v: number) => boolean,
    show: (v: number) => string,
  ) =>
    out.push(
      value === undefined
        ? { row: row.name, goal, value: "not measured", met: false }
        : { row: row.name, goal, value: show(value), met: met(value) },
    );
  for (const row of rows) {
    if (row.name.startsWith("burst/")) {
      const missed = (num(row, "queueTimeouts") ?? 0) + (num(row, "otherErrors") ?? 0);
      out.push({
        row: row.name,
        goal: "served in full",
        value: `${row.n} served, ${missed} not`,
        met: missed === 0,
      });
      check(
        row,
        `p99 ≤ ${P99_OVER}× stack CPU ÷ cores (pacing)`,
        num(row, "p99OverStackCpu"),
        (v) => v <= P99_OVER,
        (v) => `${v}×`,
      );
      check(
        row,
        `p99 ≤ ${P99_OVER}× start-up floor (as written)`,
        num(row, "p99OverMachineFloor"),
        (v) => v <= P99_OVER,
        (v) => `${v}×`,
      );
      check(
        row,
        `first new pod Ready ≤ ${FIRST_READY_MS} ms`,
        num(row, "firstNewPodReadyMs"),
        (v) => v <= FIRST_READY_MS,
        (v) => `${v} ms`,
      );
      const failures = row.extra?.agentControlPlaneFailures;
      check(
        row,
        `API p99 < ${API_P99_MS} ms, no control-plane failure`,
        num(row, "apiGetP99Ms"),
        (v) => v < API_P99_MS && num(row, "apiGetFailed") === 0 && failures === "none",
        (v) => `${v} ms, ${num(row, "apiGetFailed") ?? "?"} failed GETs, failures: ${failures ?? "?"}`,
      );
      if (row.extra?.fairnessMaxMin !== undefined)
        check(
          row,
          `median waits within ${FAIRNESS}×`,
          num(row, "fairnessMaxMin"),
          (v) => v <= FAIRNESS,
          (v) => `${v}×`,
        );
    } else if (row.name.startsWith("scale-down/")) {
      check(
        row,
        `back to POOL_SIZE ≤ ${BACK_TO_POOL_MS / 1000} s`,
        row.p99Ms,
        (v) => v <= BACK_TO_POOL_MS,
        (v) => `${(v / 1000).toFixed(1)} s`,
      );
    }
  }
  return out;
}
