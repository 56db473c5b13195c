import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor, SandboxFiles, SandboxPorts, SandboxProcesses } from "../exec/executor.ts";
import { commandOf } from "../requests/exec-request.ts";
import {
  commandPreview,
  type LeasedSandbox,
  type LeasedSandboxDeps,
  withLeasedSandbox,
} from "../requests/leased-sandbox.ts";
import { leaseOfSandbox } from "../requests/sandbox-lease.ts";
import type { SandboxService } from "./service.ts";

export interface SandboxExecDeps {
  sandboxes: SandboxService;
  executor: Executor;
  files?: SandboxFiles;
  /** http mode only: without them a process call is `not_supported_in_api_mode`. */
  processes?: SandboxProcesses;
  /** http mode only: without them a port link's request is `not_supported_in_api_mode`. */
  ports?: SandboxPorts;
  bus: EventBus;
  log?: LeasedSandboxDeps["log"];
}

/**
 * One use of a sandbox through the leased-sandbox pipeline, with the sandbox's own Lease in place
 * of a fresh one (nothing to release: the sandbox keeps its pod). Commands and file calls alike:
 * a sandbox deleted or expired meanwhile is the pipeline's answer (`sandbox_not_found`), a fence
 * refusal `lease_lost`.
 */
export function withSandbox<T>(
  deps: SandboxExecDeps,
  id: string,
  ctx: { tenant: string; requestId: string; signal: AbortSignal; what: string },
  fn: (sandbox: LeasedSandbox, env: Record<string, string> | undefined) => Promise<Result<T>>,
): Promise<Result<T>> {
  const { tenant, requestId, signal, what } = ctx;
  return deps.sandboxes.use(tenant, id, { requestId, signal, what }, (use) => {
    const lease = leaseOfSandbox(use);
    const pipeline = {
      acquire: async () => ok(lease),
      executor: deps.executor,
      bus: deps.bus,
      ...(deps.files ? { files: deps.files } : {}),
      ...(deps.processes ? { processes: deps.processes } : {}),
      ...(deps.ports ? { ports: deps.ports } : {}),
      ...(deps.log ? { log: deps.log } : {}),
    };
    return withLeasedSandbox(pipeline, { tenant, requestId, signal }, (sb) => fn(sb, use.env));
  });
}

/**
 * POST /v1/sandboxes/:id/exec: the /v1/exec contract on a sandbox. The sandbox's default env
 * applies under the command's own.
 */
export function runSandboxExec(
  deps: SandboxExecDeps,
  id: string,
  req: ExecRequest,
  ctx: { tenant: string; requestId: string; signal: AbortSignal; onEvent?: (e: ExecStreamEvent) => void },
): Promise<Result<ExecResult>> {
  const { onEvent, ...rest } = ctx;
  return withSandbox(deps, id, { ...rest, what: commandPreview(req.command) }, async (sb, env) => {
    onEvent?.({ type: "acquired", pod: sb.pod, queueMs: 0 });
    const outcome = await sb.run(commandOf(req, onEvent, env));
    return outcome.ok ? ok({ ...outcome.value, requestId: ctx.requestId, pod: sb.pod, queueMs: 0 }) : outcome;
  });
}
