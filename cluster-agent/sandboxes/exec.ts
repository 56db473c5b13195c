import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor } from "../exec/executor.ts";
import { commandOf } from "../requests/exec-request.ts";
import { commandPreview, withLeasedSandbox } from "../requests/leased-sandbox.ts";
import type { SandboxService } from "./service.ts";

export interface SandboxExecDeps {
  sandboxes: SandboxService;
  executor: Executor;
  bus: EventBus;
}

/**
 * POST /v1/sandboxes/:id/exec: the /v1/exec contract through the same leased-sandbox pipeline,
 * with the sandbox's own Lease in place of a fresh one (nothing to release: the sandbox keeps its
 * pod). The sandbox's default env applies under the command's own.
 */
export function runSandboxExec(
  deps: SandboxExecDeps,
  id: string,
  req: ExecRequest,
  ctx: { tenant: string; requestId: string; signal: AbortSignal; onEvent?: (e: ExecStreamEvent) => void },
): Promise<Result<ExecResult>> {
  const what = commandPreview(req.command);
  const { tenant, requestId, signal, onEvent } = ctx;
  return deps.sandboxes.use(tenant, id, { requestId, signal, what }, async (use) => {
    const lease = { ...use.target, lost: use.signal, queueMs: 0, release: async () => {} };
    const pipeline = { acquire: async () => ok(lease), executor: deps.executor, bus: deps.bus };
    const result = await withLeasedSandbox(pipeline, { tenant, requestId, signal }, async (sb) => {
      onEvent?.({ type: "acquired", pod: sb.pod, queueMs: 0 });
      const outcome = await sb.run(commandOf(req, onEvent, use.env));
      return outcome.ok ? ok({ ...outcome.value, requestId, pod: sb.pod, queueMs: 0 }) : outcome;
    });
    // Deleted (or expired) while it ran: the command was killed with its pod; say so, not lease_lost.
    const gone: unknown = use.signal.aborted && !signal.aborted ? use.signal.reason : undefined;
    return gone instanceof AppError ? err(gone) : result;
  });
}
