import type { ExecutionSnapshot } from "../../shared/api.ts";
import type { PoolEventOf } from "../../shared/events.ts";
import type { EventBus } from "./bus.ts";

/** As many as the dashboard lists (edge/dashboard/reducer.ts MAX_EXECUTIONS). */
export const RECENT_EXECUTIONS = 50;

/**
 * This agent's last executions, folded from its own exec.started/exec.finished events, newest
 * first and bounded: the snapshot carries them, so a dashboard opened later lists what already ran.
 */
export class RecentExecutions {
  #list: ExecutionSnapshot[] = [];
  readonly #off: () => void;

  constructor(
    bus: EventBus,
    readonly capacity = RECENT_EXECUTIONS,
  ) {
    this.#off = bus.onType(["exec.started", "exec.finished"], (e) => this.#fold(e));
  }

  /** Copies, newest first. */
  list(): ExecutionSnapshot[] {
    return this.#list.map((x) => ({ ...x }));
  }

  stop(): void {
    this.#off();
  }

  #fold(e: PoolEventOf<"exec.started" | "exec.finished">): void {
    const requestId = e.requestId ?? "";
    const pod = e.pod ?? "";
    if (e.type === "exec.started") {
      this.#list.unshift({
        requestId,
        tenant: e.tenant ?? "",
        pod,
        commandPreview: e.data.commandPreview,
        startedAt: e.at,
        finishedAt: null,
        exitCode: null,
        timedOut: false,
        durationMs: null,
        queueMs: e.data.queueMs,
      });
    } else {
      const done = {
        finishedAt: e.at,
        exitCode: e.data.exitCode,
        timedOut: e.data.timedOut,
        durationMs: e.data.durationMs,
      };
      // One request runs its commands one after another on one pod: request + pod finds the open one.
      const open = this.#list.find(
        (x) => x.requestId === requestId && x.pod === pod && x.finishedAt === null,
      );
      if (open) Object.assign(open, done);
      else
        this.#list.unshift({
          requestId,
          tenant: e.tenant ?? "",
          pod,
          commandPreview: e.data.commandPreview,
          startedAt: new Date(Date.parse(e.at) - e.data.durationMs).toISOString(),
          queueMs: e.data.queueMs,
          ...done,
        });
    }
    if (this.#list.length > this.capacity) this.#list.length = this.capacity;
  }
}
