import { describe, expect, it } from "vitest";
import { type DashboardState, initialState, reduce } from "../../edge/dashboard/reducer.ts";
import { view } from "../../edge/dashboard/view.ts";
import type { PoolEvent, PoolSnapshot } from "../../shared/api.ts";
import { isoAfter, poolEvent, poolSnapshot, sandboxSnapshot } from "../support/pool-fixtures.ts";

const T0 = "2026-11-22T02:00:00.000Z";
const T0MS = Date.parse(T0);
const ID = "sb.local.default.abcdefghij0123456789";

function fold(msgs: Array<PoolSnapshot | PoolEvent>, nowMs = T0MS): DashboardState {
  return msgs.reduce<DashboardState>(
    (s, m) => reduce(s, "type" in m ? { kind: "event", event: m } : { kind: "snapshot", snapshot: m }, nowMs),
    initialState(),
  );
}
const sandboxesAt = (s: DashboardState, nowMs: number) => view(s, nowMs).regions[0]?.sandboxes ?? [];

describe("dashboard sandboxes panel", () => {
  it("shows a snapshot's sandboxes with pod, tenant, idle countdown and last command", () => {
    const s = fold([
      poolSnapshot({
        at: T0,
        podCount: 2,
        sandboxes: [
          {
            id: ID,
            pod: "sandbox-1",
            tenant: "acme",
            name: "work",
            idleTimeoutSeconds: 60,
            lastActivityAt: isoAfter(T0, -10_000),
            expiresAt: isoAfter(T0, 50_000),
            lastCommand: "npm test",
          },
        ],
      }),
    ]);
    expect(sandboxesAt(s, T0MS + 5_000)).toEqual([
      {
        id: ID,
        pod: "sandbox-1",
        tenant: "acme",
        name: "work",
        idleLeftMs: 45_000,
        lastCommand: "npm test",
        processes: [],
        links: [],
      },
    ]);
  });

  it("follows sandbox events: created, used (activity resets the countdown), expired", () => {
    const ev = (type: PoolEvent["type"], ms: number, data: Record<string, unknown>) =>
      poolEvent(type, { pod: "sandbox-2", tenant: "t1", at: isoAfter(T0, ms) }, data);
    const created = fold([
      poolSnapshot({ at: T0, podCount: 1 }),
      ev("sandbox.created", 1_000, { sandboxId: ID, idleTimeoutSeconds: 30 }),
    ]);
    expect(sandboxesAt(created, T0MS + 11_000)[0]).toMatchObject({ idleLeftMs: 20_000, lastCommand: null });
    const used = reduce(
      created,
      { kind: "event", event: ev("sandbox.used", 20_000, { sandboxId: ID, what: "ls -la" }) },
      T0MS,
    );
    expect(sandboxesAt(used, T0MS + 25_000)[0]).toMatchObject({ idleLeftMs: 25_000, lastCommand: "ls -la" });
    const gone = reduce(
      used,
      { kind: "event", event: ev("sandbox.expired", 60_000, { sandboxId: ID }) },
      T0MS,
    );
    expect(sandboxesAt(gone, T0MS + 61_000)).toEqual([]);
  });

  it("running processes per sandbox: from each agent's snapshot, then process.started / process.exited; a deleted sandbox takes them", () => {
    const sandbox = sandboxSnapshot(ID, T0);
    const running = (sandboxId: string | null, pid: number, commandPreview: string, startedAt: string) => ({
      sandboxId,
      pod: "sandbox-1",
      tenant: "acme",
      pid,
      commandPreview,
      tty: false,
      startedAt,
    });
    const s = fold([
      poolSnapshot({
        at: T0,
        agentId: "agent-a",
        sandboxes: [sandbox],
        processes: [running(ID, 40, "npm run dev", isoAfter(T0, -60_000))],
      }),
      // Another replica's snapshot lists its own; the first agent's stay.
      poolSnapshot({
        at: T0,
        agentId: "agent-b",
        sandboxes: [sandbox],
        processes: [running(ID, 41, "tail -f log", isoAfter(T0, -1_000))],
      }),
      poolEvent(
        "process.started",
        { agentId: "agent-a", pod: "sandbox-1", tenant: "acme", at: isoAfter(T0, 1_000) },
        { sandboxId: ID, pid: 42, commandPreview: "python3 -i", tty: true },
      ),
    ]);
    expect(sandboxesAt(s, T0MS + 2_000)[0]?.processes).toEqual([
      { pid: 40, commandPreview: "npm run dev", tty: false, runningMs: 62_000 },
      { pid: 41, commandPreview: "tail -f log", tty: false, runningMs: 3_000 },
      { pid: 42, commandPreview: "python3 -i", tty: true, runningMs: 1_000 },
    ]);
    const exited = reduce(
      s,
      {
        kind: "event",
        event: poolEvent(
          "process.exited",
          { agentId: "agent-b", pod: "sandbox-1", tenant: "acme", at: isoAfter(T0, 3_000) },
          { sandboxId: ID, pid: 41, commandPreview: "tail -f log" },
        ),
      },
      T0MS,
    );
    expect(sandboxesAt(exited, T0MS + 4_000)[0]?.processes.map((p) => p.pid)).toEqual([40, 42]);
    // agent-a's next snapshot no longer lists 40: it ended while the page was away.
    const resnap = reduce(
      exited,
      {
        kind: "snapshot",
        snapshot: poolSnapshot({
          at: isoAfter(T0, 5_000),
          agentId: "agent-a",
          sandboxes: [sandbox],
          processes: [],
        }),
      },
      T0MS + 5_000,
    );
    expect(sandboxesAt(resnap, T0MS + 6_000)[0]?.processes).toEqual([]);
    const deleted = reduce(
      s,
      {
        kind: "event",
        event: poolEvent("sandbox.deleted", { pod: "sandbox-1", at: isoAfter(T0, 4_000) }, { sandboxId: ID }),
      },
      T0MS,
    );
    expect(deleted.regions.local?.processes).toEqual({});
  });
});
