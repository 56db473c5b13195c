import { typedEvents } from "./streams.ts";
import { type CallOptions, callOptions, type Transport } from "./transport.ts";
import type { ExecBody, ExecEvent, ExecResult, ExecStreamEvent } from "./types.ts";

export type ExecOptions = ExecBody & CallOptions;

/** Above the command's own timeout: the queue wait (≤ 15 s) and the relay. */
const EXEC_MARGIN_MS = 30_000;

/** The call's timeout: the caller's, or the command's own plus the margin (never below the client's). */
export function execTimeoutMs(transport: Transport, opts: ExecOptions): number {
  return (
    opts.timeoutMs ??
    Math.max(transport.defaultTimeoutMs, (opts.timeoutSeconds ?? 30) * 1000 + EXEC_MARGIN_MS)
  );
}

/** The request body: the options minus what belongs to the call. */
export function execBody(command: string, opts: ExecOptions): Record<string, unknown> {
  const { signal: _s, timeoutMs: _t, retries: _r, ...body } = opts;
  return { command, ...body };
}

/** `POST <path>` as one JSON result: /v1/exec and a sandbox's exec share it. */
export function execJson(
  transport: Transport,
  path: string,
  command: string,
  opts: ExecOptions,
): Promise<ExecResult> {
  return transport.json<ExecResult>({
    method: "POST",
    path,
    json: execBody(command, opts),
    ...callOptions(opts),
    timeoutMs: execTimeoutMs(transport, opts),
  });
}

/** `POST <path>` as its events, ending in `result`. */
export function execEvents(
  transport: Transport,
  path: string,
  command: string,
  opts: ExecOptions,
): AsyncGenerator<ExecEvent> {
  return typedEvents<ExecStreamEvent>(
    transport,
    {
      method: "POST",
      path,
      json: execBody(command, opts),
      ...callOptions(opts),
      timeoutMs: execTimeoutMs(transport, opts),
    },
    "result",
  );
}
