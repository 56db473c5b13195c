import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor } from "../exec/executor.ts";
import type { AcquireRequest, LeaseHandle } from "../leases/types.ts";

export interface ExecRequestDeps {
  acquire(req: AcquireRequest): Promise<Result<LeaseHandle>>;
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

/** What the dashboard's timeline shows of a command: its first line, bounded. */
export function commandPreview(command: string, max = 120): string {
  const first = command.split("\n", 1)[0] ?? "";
  const more = first.length < command.length;
  return first.length > max ? `${first.slice(0, max - 1)}…` : more ? `${first} …` : first;
}

/**
 * Output chunks as stream events: utf8 text (a character split across chunks is held until it is
 * whole), or base64 of each chunk's exact bytes.
 */
export function streamEvents(
  onEvent: (e: ExecStreamEvent) => void,
  encoding: "utf8" | "base64" = "utf8",
): (stream: "stdout" | "stderr", chunk: Uint8Array) => void {
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  return (stream, chunk) => {
    const data =
      encoding === "base64"
        ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("base64")
        : decoders[stream].decode(chunk, { stream: true });
    if (data) onEvent({ type: stream, data });
  };
}

/**
 * One exec request from start to end: take a lease (queueing if needed), run the command on that
 * pod, release the lease on every path. The lease's `lost` signal and the caller's signal both
 * kill the command.
 */
export async function runExecRequest(
  deps: ExecRequestDeps,
  req: ExecRequest,
  ctx: ExecRequestContext,
): Promise<Result<ExecResult>> {
  const { requestId, tenant, signal, onEvent } = ctx;
  const stopQueueWatch = onEvent
    ? deps.bus.onType(["queue.entered"], (e) => {
        if (e.requestId !== requestId) return;
        const position = typeof e.data?.position === "number" ? e.data.position : 0;
        onEvent({ type: "queued", position });
      })
    : () => {};
  let lease: Result<LeaseHandle>;
  try {
    lease = await deps.acquire({ tenant, requestId, signal });
  } finally {
    stopQueueWatch();
  }
  if (!lease.ok) return lease;
  const handle = lease.value;
  const preview = commandPreview(req.command);
  let outcomeForEvent: { exitCode: number | null; durationMs: number; timedOut: boolean; error?: string } = {
    exitCode: null,
    durationMs: 0,
    timedOut: false,
  };
  try {
    onEvent?.({ type: "acquired", pod: handle.pod, queueMs: handle.queueMs });
    deps.bus.emit({
      type: "exec.started",
      requestId,
      tenant,
      pod: handle.pod,
      data: { commandPreview: preview, queueMs: handle.queueMs, mode: deps.executor.mode },
    });
    const killed = AbortSignal.any([signal, handle.lost]);
    const outcome = await deps.executor.exec(
      { namespace: handle.namespace, pod: handle.pod, podIP: handle.podIP, fence: handle.fence },
      {
        command: req.command,
        timeoutMs: req.timeoutSeconds * 1000,
        ...(req.stdin !== undefined ? { stdin: req.stdin } : {}),
        ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
        ...(req.env !== undefined ? { env: req.env } : {}),
        ...(req.outputEncoding !== undefined ? { outputEncoding: req.outputEncoding } : {}),
        signal: killed,
        ...(onEvent ? { onOutput: streamEvents(onEvent, req.outputEncoding) } : {}),
      },
    );
    if (handle.lost.aborted && !signal.aborted) {
      outcomeForEvent = { ...outcomeForEvent, error: "lease_lost" };
      return err(new AppError("lease_lost", `the lease on ${handle.pod} was lost; the command was killed`));
    }
    if (!outcome.ok) {
      outcomeForEvent = { ...outcomeForEvent, error: outcome.error.code };
      return outcome;
    }
    const o = outcome.value;
    outcomeForEvent = { exitCode: o.exitCode, durationMs: o.durationMs, timedOut: o.timedOut };
    return ok({ ...o, requestId, pod: handle.pod, queueMs: handle.queueMs });
  } finally {
    deps.bus.emit({
      type: "exec.finished",
      requestId,
      tenant,
      pod: handle.pod,
      data: { commandPreview: preview, queueMs: handle.queueMs, ...outcomeForEvent },
    });
    await handle.release();
  }
}
