import type { ProcessSnapshot } from "../../shared/api.ts";
import type { EventBus } from "./bus.ts";

/** Bound on what one agent lists: 16 processes per sandbox, over many sandboxes. */
export const RUNNING_PROCESSES_LIMIT = 1000;

/**
 * The processes this agent started and has not seen end, folded from its own process.started /
 * process.exited events (the exit watch emits the latter): the snapshot carries them, so a
 * dashboard opened later shows what runs. Another replica's processes are in its own snapshot.
 */
export class RunningProcesses {
  readonly #byKey = new Map<string, ProcessSnapshot>();
  readonly #off: () => void;

  constructor(bus: EventBus) {
    this.#off = bus.onType(["process.started", "process.exited"], (e) => {
      const key = `${e.pod ?? ""}/${e.data.pid}`;
      if (e.type === "process.exited") {
        this.#byKey.delete(key);
        return;
      }
      if (this.#byKey.size >= RUNNING_PROCESSES_LIMIT) return;
      this.#byKey.set(key, {
        sandboxId: e.data.sandboxId,
        pod: e.pod ?? "",
        tenant: e.tenant ?? "",
        pid: e.data.pid,
        commandPreview: e.data.commandPreview,
        tty: e.data.tty,
        startedAt: e.at,
      });
    });
  }

  /** Copies, oldest first. */
  list(): ProcessSnapshot[] {
    return [...this.#byKey.values()].map((p) => ({ ...p }));
  }

  stop(): void {
    this.#off();
  }
}
