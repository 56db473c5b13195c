import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import { RECENT_EXECUTIONS, RecentExecutions } from "../../cluster-agent/events/recent-executions.ts";
import { ExecutionSnapshotSchema } from "../../shared/api.ts";
import { eventInput } from "../support/pool-fixtures.ts";

describe("the agent's recent executions (the snapshot's history)", () => {
  const started = (requestId: string, commandPreview: string, pod = "pi-sandbox-1") =>
    eventInput({
      type: "exec.started",
      requestId,
      tenant: "acme",
      pod,
      data: { commandPreview, queueMs: 4 },
    });
  const finished = (requestId: string, exitCode: number, durationMs: number, pod = "pi-sandbox-1") =>
    eventInput({ type: "exec.finished", requestId, tenant: "acme", pod, data: { exitCode, durationMs } });

  it("folds exec.started/finished into one record per command, newest first, in the snapshot's schema", () => {
    const bus = new EventBus("agent-a", "local");
    const recent = new RecentExecutions(bus);
    const s1 = bus.emit(started("r1", "ls"));
    const f1 = bus.emit(finished("r1", 0, 12));
    bus.emit(started("r2", "sleep 9"));
    const list = recent.list();
    expect(list.map((x) => ExecutionSnapshotSchema.parse(x))).toEqual(list);
    expect(list).toEqual([
      expect.objectContaining({
        requestId: "r2",
        commandPreview: "sleep 9",
        finishedAt: null,
        exitCode: null,
      }),
      {
        requestId: "r1",
        tenant: "acme",
        pod: "pi-sandbox-1",
        commandPreview: "ls",
        startedAt: s1.at,
        finishedAt: f1.at,
        exitCode: 0,
        timedOut: false,
        durationMs: 12,
        queueMs: 4,
      },
    ]);
  });

  it("the commands of one request on one pod are separate rows; a finish closes the open one", () => {
    const bus = new EventBus("agent-a", "local");
    const recent = new RecentExecutions(bus);
    bus.emit(started("chat", "one"));
    bus.emit(finished("chat", 0, 1));
    bus.emit(started("chat", "two"));
    bus.emit(finished("chat", 7, 2));
    expect(recent.list().map((x) => [x.commandPreview, x.exitCode])).toEqual([
      ["two", 7],
      ["one", 0],
    ]);
  });

  it("a finish without its start is kept, started its duration earlier", () => {
    const bus = new EventBus("agent-a", "local");
    const recent = new RecentExecutions(bus);
    const f = bus.emit(finished("orphan", 1, 500));
    expect(recent.list()[0]).toMatchObject({ requestId: "orphan", exitCode: 1, finishedAt: f.at });
    expect(Date.parse(f.at) - Date.parse(recent.list()[0]!.startedAt)).toBe(500);
  });

  it("is bounded, keeps the newest, ignores other events, and stops listening on stop()", () => {
    const bus = new EventBus("agent-a", "local");
    const recent = new RecentExecutions(bus);
    for (let i = 0; i < RECENT_EXECUTIONS + 5; i++) bus.emit(started(`r${i}`, `c${i}`));
    bus.emit(eventInput({ type: "lease.acquired", requestId: "x", pod: "p" }));
    const list = recent.list();
    expect(list).toHaveLength(RECENT_EXECUTIONS);
    expect(list[0]!.requestId).toBe(`r${RECENT_EXECUTIONS + 4}`);
    // list() hands out copies: a caller cannot change the history.
    list[0]!.commandPreview = "changed";
    expect(recent.list()[0]!.commandPreview).toBe(`c${RECENT_EXECUTIONS + 4}`);
    recent.stop();
    bus.emit(started("after-stop", "x"));
    expect(recent.list()[0]!.requestId).toBe(`r${RECENT_EXECUTIONS + 4}`);
  });
});
