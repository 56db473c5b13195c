import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor } from "../exec/executor.ts";
import type { Acquire } from "../leases/types.ts";
import { withLeasedSandbox } from "./leased-sandbox.ts";

export interface ExecRequestDeps {
  acquire: Acquire;
  executor: Executor;
  bus: EventBus;
}

export interface ExecRequestContext {
  tenant: string;
  requestId: string;
  /** Aborts when the caller goes away: the command is killed and the lease freed. */
  signal: AbortSignal;
  /** Streamed progress, for SSE callers. */
  onEvent?: (e: ExecStreamEvent) => void;
}

/** `POST /v1/exec`: one command through the leased-sandbox pipeline. */
export async function runExecRequest(
  deps: ExecRequestDeps,
  req: ExecRequest,
  ctx: ExecRequestContext,
): Promise<Result<ExecResult>> {
  const { requestId, tenant, signal, onEvent } = ctx;
  const pipeline = {
    acquire: (s: AbortSignal) => deps.acquire({ tenant, requestId, signal: s }),
    executor: deps.executor,
    bus: deps.bus,
  };
  const onQueued = onEvent ? (position: number) => onEvent({ type: "queued", position }) : undefined;
  return withLeasedSandbox(
    pipeline,
    { tenant, requestId, signal, ...(onQueued ? { onQueued } : {}) },
    async (sb) => {
      onEvent?.({ type: "acquired", pod: sb.pod, queueMs: sb.queueMs });
      const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
      const outcome = await sb.run({
        command: req.command,
        timeoutMs: req.timeoutSeconds * 1000,
        ...(req.stdin !== undefined ? { stdin: req.stdin } : {}),
        ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
        ...(req.env !== undefined ? { env: req.env } : {}),
        ...(onEvent
          ? {
              onOutput: (stream: "stdout" | "stderr", chunk: Uint8Array) => {
                const data = decoders[stream].decode(chunk, { stream: true });
                if (data) onEvent({ type: stream, data });
              },
            }
          : {}),
      });
      if (!outcome.ok) return outcome;
      return ok({ ...outcome.value, requestId, pod: sb.pod, queueMs: sb.queueMs });
    },
  );
}
