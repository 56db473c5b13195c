import type { ExecRequest, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { networkRefusal } from "../../shared/egress-policy.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { Spans } from "../../shared/spans.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor } from "../exec/executor.ts";
import type { Acquire } from "../leases/types.ts";
import { type LeasedSandboxDeps, type SandboxCommand, withLeasedSandbox } from "./leased-sandbox.ts";

export interface ExecRequestDeps {
  acquire: Acquire;
  executor: Executor;
  bus: EventBus;
  log?: LeasedSandboxDeps["log"];
  /**
   * The egress proxy's variables (egress/sandbox-env.ts), for a call with `network`. Absent: no
   * proxy runs here, and a `network` that allows anything is refused rather than ignored.
   */
  egressEnv?: Readonly<Record<string, string>>;
  /** EGRESS_ALLOW_ANY_HOST. */
  allowAnyHost?: boolean;
}

/**
 * A one-shot call's `network` as its acquire carries it (absent: no network) and the env of its
 * command, or why it cannot be had: a policy that opens something where no proxy runs.
 */
export function useNetwork(
  network: ExecRequest["network"],
  egress: { env?: Readonly<Record<string, string>> | undefined; allowAnyHost?: boolean | undefined },
): Result<{ network?: NonNullable<ExecRequest["network"]>; env?: Readonly<Record<string, string>> }> {
  const why = networkRefusal(network, {
    proxy: egress.env !== undefined,
    allowAnyHost: egress.allowAnyHost ?? false,
  });
  if (why !== undefined) return err(new AppError("invalid_request", why));
  // Every command gets the proxy variables where a proxy runs: without a policy the proxy refuses
  // it by name (egress_unknown_source), which says more than a failed DNS lookup.
  if (!egress.env) return ok({});
  return ok({ ...(network ? { network } : {}), env: egress.env });
}

export interface ExecRequestContext {
  tenant: string;
  requestId: string;
  /** Aborts when the caller goes away: the command is killed and the lease freed. */
  signal: AbortSignal;
  /** Streamed progress, for SSE callers. */
  onEvent?: (e: ExecStreamEvent) => void;
  /** The request's timing spans (reported to the edge in `server-timing`). */
  spans?: Spans;
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

/** An exec request as the pipeline's command (shared by /v1/exec and /v1/sandboxes/:id/exec). */
export function commandOf(
  req: ExecRequest,
  onEvent: ((e: ExecStreamEvent) => void) | undefined,
  baseEnv?: Record<string, string>,
): SandboxCommand {
  const env = baseEnv || req.env ? { ...(baseEnv ?? {}), ...(req.env ?? {}) } : undefined;
  return {
    command: req.command,
    timeoutMs: req.timeoutSeconds * 1000,
    ...(req.stdin !== undefined ? { stdin: req.stdin } : {}),
    ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
    ...(env !== undefined ? { env } : {}),
    ...(req.outputEncoding !== undefined ? { outputEncoding: req.outputEncoding } : {}),
    ...(onEvent ? { onOutput: streamEvents(onEvent, req.outputEncoding) } : {}),
  };
}

/** `POST /v1/exec`: one command through the leased-sandbox pipeline. */
export async function runExecRequest(
  deps: ExecRequestDeps,
  req: ExecRequest,
  ctx: ExecRequestContext,
): Promise<Result<ExecResult>> {
  const { requestId, tenant, signal, onEvent, spans } = ctx;
  const net = useNetwork(req.network, { env: deps.egressEnv, allowAnyHost: deps.allowAnyHost });
  if (!net.ok) return net;
  const { network, env } = net.value;
  const pipeline = {
    acquire: (s: AbortSignal) =>
      deps.acquire({ tenant, requestId, signal: s, ...(network ? { network } : {}) }),
    executor: deps.executor,
    bus: deps.bus,
    ...(deps.log ? { log: deps.log } : {}),
  };
  const onQueued = onEvent ? (position: number) => onEvent({ type: "queued", position }) : undefined;
  return withLeasedSandbox(
    pipeline,
    { tenant, requestId, signal, ...(onQueued ? { onQueued } : {}), ...(spans ? { spans } : {}) },
    async (sb) => {
      onEvent?.({ type: "acquired", pod: sb.pod, queueMs: sb.queueMs });
      const outcome = await sb.run(commandOf(req, onEvent, env ? { ...env } : undefined));
      if (!outcome.ok) return outcome;
      return ok({ ...outcome.value, requestId, pod: sb.pod, queueMs: sb.queueMs });
    },
  );
}
