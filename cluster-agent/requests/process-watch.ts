import type { ProcessInfo } from "../../shared/api.ts";
import type { AppError } from "../../shared/errors.ts";
import type { ExecTarget, SandboxProcesses } from "../exec/executor.ts";

/** One long-poll of the exit watch: the exec server answers at the exit or after this (its maximum). */
const WATCH_POLL_MS = 30_000;

/**
 * Watches one process until it ends, by long-polling the pod (`GET /processes/<pid>?waitMs=`), and
 * calls `ended` once: with its final info, or with the error that ended the watch (the sandbox was
 * deleted or its pod recycled — which kills every process — or the pod stopped answering). It runs
 * outside any request and is no use of the sandbox: a watched process keeps nothing alive. The
 * state stays in the pod, so a replica that dies loses only its watches (and their events).
 */
export function watchProcessExit(
  processes: SandboxProcesses,
  target: ExecTarget,
  pid: number,
  ended: (r: { info: ProcessInfo } | { error: AppError }) => void,
): void {
  void (async () => {
    for (;;) {
      const r = await processes.get(target, pid, {
        signal: new AbortController().signal,
        waitMs: WATCH_POLL_MS,
      });
      if (!r.ok) return ended({ error: r.error });
      if (!r.value.running) return ended({ info: r.value });
    }
  })();
}
