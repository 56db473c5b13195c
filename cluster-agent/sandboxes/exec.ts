import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor } from "../exec/executor.ts";
import { commandPreview, streamEvents } from "../requests/exec-request.ts";
import type { SandboxService } from "./service.ts";

export interface SandboxExecDeps {
  sandboxes: SandboxService;
  executor: Executor;
  bus: EventBus;
}

/**
 * POST /v1/sandboxes/:id/exec: the /v1/exec contract, run in the sandbox's own pod instead of a
 * disposable one. The sandbox's default env applies under the command's own.
 */
export function runSandboxExec(
  deps: SandboxExecDeps,
  id: string,
  req: ExecRequest,
  ctx: { tenant: string; requestId: string; signal: AbortSignal; onEvent?: (e: ExecStreamEvent) => void },
): Promise<Result<ExecResult>> {
  const preview = commandPreview(req.command);
  return deps.sandboxes.use(
    ctx.tenant,
    id,
    { requestId: ctx.requestId, signal: ctx.signal, what: preview },
    async (use) => {
      const { target } = use;
      ctx.onEvent?.({ type: "acquired", pod: target.pod, queueMs: 0 });
      deps.bus.emit({
        type: "exec.started",
        requestId: ctx.requestId,
        tenant: ctx.tenant,
        pod: target.pod,
        data: { commandPreview: preview, queueMs: 0, mode: deps.executor.mode, sandboxId: id },
      });
      const env = use.env || req.env ? { ...(use.env ?? {}), ...(req.env ?? {}) } : undefined;
      const outcome = await deps.executor.exec(target, {
        command: req.command,
        timeoutMs: req.timeoutSeconds * 1000,
        ...(req.stdin !== undefined ? { stdin: req.stdin } : {}),
        ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
        ...(env !== undefined ? { env } : {}),
        ...(req.outputEncoding !== undefined ? { outputEncoding: req.outputEncoding } : {}),
        signal: use.signal,
        ...(ctx.onEvent ? { onOutput: streamEvents(ctx.onEvent, req.outputEncoding) } : {}),
      });
      // Deleted (or expired) while it ran: the command was killed with its pod; say so, not "failed".
      const gone = use.signal.aborted && !ctx.signal.aborted ? use.signal.reason : undefined;
      const result: Result<ExecResult> =
        gone instanceof AppError
          ? err(gone)
          : outcome.ok
            ? ok({ ...outcome.value, requestId: ctx.requestId, pod: target.pod, queueMs: 0 })
            : outcome;
      deps.bus.emit({
        type: "exec.finished",
        requestId: ctx.requestId,
        tenant: ctx.tenant,
        pod: target.pod,
        data: {
          commandPreview: preview,
          queueMs: 0,
          sandboxId: id,
          ...(result.ok
            ? {
                exitCode: result.value.exitCode,
                durationMs: result.value.durationMs,
                timedOut: result.value.timedOut,
              }
            : { exitCode: null, durationMs: 0, timedOut: false, error: result.error.code }),
        },
      });
      return result;
    },
  );
}
