import { SseBlockSplitter } from "../../shared/sse.ts";

/**
 * One SSE stream made of several (the event streams of every agent of a region): events are
 * passed on whole, never interleaved mid-event. The messages are the agents' `snapshot` and
 * `pool` events (shared/events.ts, POOL_SSE_EVENTS); they are relayed as the agents framed them,
 * unparsed (split into whole blocks by the shared codec, `shared/sse.ts`, so CRLF-framed events
 * are cut right too) — nothing at the edge reads their fields, and the dashboard checks each one it
 * folds. The first source to end or fail ends the merged
 * stream (and cancels the rest), so the client reconnects and subscribes to the agents connected
 * then; cancelling the merged stream cancels every source.
 */
export function mergeSseStreams(sources: ReadableStream<Uint8Array>[]): ReadableStream<Uint8Array> {
  const readers = sources.map((s) => s.getReader());
  const encoder = new TextEncoder();
  let closed = false;
  const stopAll = (reason?: unknown) => {
    for (const r of readers) r.cancel(reason).catch(() => undefined);
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const pumps = readers.map(async (reader) => {
        const decoder = new TextDecoder();
        const blocks = new SseBlockSplitter();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || closed) return;
          for (const b of blocks.push(decoder.decode(value, { stream: true })))
            controller.enqueue(encoder.encode(b));
        }
      });
      Promise.race(pumps).then(
        () => {
          if (closed) return;
          closed = true;
          controller.close();
          stopAll();
        },
        (e: unknown) => {
          if (closed) return;
          closed = true;
          controller.error(e);
          stopAll(e);
        },
      );
    },
    cancel(reason) {
      closed = true;
      stopAll(reason);
    },
  });
}
