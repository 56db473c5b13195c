import { encodeSse, encodeSseComment } from "../../shared/sse.ts";

/**
 * Server-sent events as a web `Response`, used for every streamed route (exec, chat, events)
 * so keep-alive and shutdown work one way; the framing is the shared codec's (`shared/sse.ts`).
 */
export interface SseWriter {
  /** Queue one event; a no-op once the stream is closed. */
  send(event: string, data: unknown): void;
  readonly closed: boolean;
}

const encoder = new TextEncoder();

const PING = encoder.encode(encodeSseComment("ping"));

/**
 * `run` writes events and resolves when the stream is complete. The stream also ends when the
 * client goes away (`signal`), which is how callers learn to stop work.
 */
export function sseResponse(
  signal: AbortSignal,
  run: (w: SseWriter) => Promise<void>,
  opts: { pingMs?: number; headers?: Record<string, string> } = {},
): Response {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  let ping: ReturnType<typeof setInterval> | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    if (ping) clearInterval(ping);
    try {
      controller.close();
    } catch {
      // already errored or cancelled by the reader
    }
  };
  const writer: SseWriter = {
    send(event, data) {
      if (closed) return;
      controller.enqueue(encoder.encode(encodeSse({ event, data: JSON.stringify(data) })));
    },
    get closed() {
      return closed;
    },
  };
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      if (opts.pingMs) {
        ping = setInterval(() => {
          if (!closed) controller.enqueue(PING);
        }, opts.pingMs);
        ping.unref?.();
      }
      signal.addEventListener("abort", close, { once: true });
      run(writer).finally(close);
    },
    cancel() {
      closed = true;
      if (ping) clearInterval(ping);
    },
  });
  return new Response(stream, {
    status: 200,
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
      ...opts.headers,
    },
  });
}

export function wantsEventStream(accept: string | undefined | null): boolean {
  return (accept ?? "").split(",").some((p) => p.trim().toLowerCase().startsWith("text/event-stream"));
}
