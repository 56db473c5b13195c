import type { ChatEvent, ExecResult, ExecStreamEvent } from "../../shared/api.ts";
import { errorResponse, type Result } from "../../shared/errors.ts";
import type { Spans } from "../../shared/spans.ts";
import { encodeSseComment, SseBlockSplitter } from "../../shared/sse.ts";
import { sseResponse, wantsEventStream } from "./sse.ts";

/**
 * Keep-alive comments on exec and chat streams. Besides keeping proxies from closing a quiet
 * stream, they are how a client's disconnect is noticed: workerd (the edge) learns that its
 * client left only when it next writes to it, so without them a command that prints nothing
 * (`sleep 60`) ran on, holding its lease, after the caller had gone.
 */
export const STREAM_PING_MS = 2_000;

/**
 * The region that served a run goes into the answer here, the one place: the agent knows its
 * region (REGION), and the edge passes answers on unread, so a streamed `result` or `done`
 * carries it exactly like a JSON one.
 */
export function withRegion<T extends object>(value: T, region: string): T & { region: string } {
  return { ...value, region };
}

/** A chat event as sent: its final response (`done`) names the region. */
export function chatEventWithRegion(e: ChatEvent, region: string): ChatEvent {
  return e.type === "done" ? { ...e, response: withRegion(e.response, region) } : e;
}

export interface RunRequest {
  accept: string | undefined;
  /** Aborts when the caller goes away; ends the stream. */
  signal: AbortSignal;
  requestId: string;
  region: string;
  spans?: Spans;
}

/**
 * How a command run answers, whichever route ran it (`/v1/exec`, a sandbox's exec): a JSON
 * ExecResult, or with `Accept: text/event-stream` its progress events and then one `result`
 * (or `error`) event. `run` gets the event sink only when streaming.
 */
export function answerExec(
  req: RunRequest,
  run: (onEvent?: (e: ExecStreamEvent) => void) => Promise<Result<ExecResult>>,
): Response | Promise<Response> {
  const { requestId, region } = req;
  if (wantsEventStream(req.accept)) {
    return sseResponse(
      req.signal,
      async (w) => {
        const result = await run((e) => w.send(e.type, e));
        if (result.ok) w.send("result", { type: "result", result: withRegion(result.value, region) });
        else w.send("error", { type: "error", error: result.error.toBody(requestId) });
      },
      { pingMs: STREAM_PING_MS, headers: { "X-Request-Id": requestId } },
    );
  }
  return run().then((result) => {
    const endEncode = req.spans?.start("encode", "result JSON");
    const res = result.ok
      ? Response.json(withRegion(result.value, region))
      : errorResponse(result.error, requestId);
    endEncode?.();
    return res;
  });
}

export { wantsEventStream };

const encoder = new TextEncoder();
const PING = encoder.encode(encodeSseComment("ping"));

/**
 * An SSE stream someone else framed (the exec server's process output, whose ids are byte offsets)
 * passed on event for event, unread, with this agent's keep-alive comments slipped in between
 * whole events (shared/sse.ts's block splitter, so no event is cut) for the reason STREAM_PING_MS
 * says. Pulled, not pushed: a slow client slows the source (the exec server then counts its drops).
 * `onEnd` runs once when the stream ends, breaks, is cancelled or `signal` aborts (the caller left,
 * even if nobody reads or cancels the body any more).
 */
export function relayedSseResponse(
  source: ReadableStream<Uint8Array>,
  opts: { requestId: string; signal: AbortSignal; onEnd: () => void },
): Response {
  const reader = source.getReader();
  const decoder = new TextDecoder();
  const blocks = new SseBlockSplitter();
  let ping: ReturnType<typeof setInterval> | undefined;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(ping);
    opts.signal.removeEventListener("abort", onAbort);
    opts.onEnd();
  };
  const onAbort = () => {
    end();
    void reader.cancel(opts.signal.reason).catch(() => undefined);
  };
  if (opts.signal.aborted) onAbort();
  else opts.signal.addEventListener("abort", onAbort, { once: true });
  const body = new ReadableStream<Uint8Array>({
    start(ctrl) {
      ping = setInterval(() => {
        if ((ctrl.desiredSize ?? 0) > 0) ctrl.enqueue(PING);
      }, STREAM_PING_MS);
      ping.unref?.();
    },
    async pull(ctrl) {
      try {
        for (;;) {
          const next = await reader.read();
          if (next.done) {
            end();
            ctrl.close();
            return;
          }
          const whole = blocks.push(decoder.decode(next.value, { stream: true }));
          if (whole.length > 0) {
            ctrl.enqueue(encoder.encode(whole.join("")));
            return;
          }
        }
      } catch (e) {
        end();
        ctrl.error(e);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason);
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
      "x-request-id": opts.requestId,
    },
  });
}
