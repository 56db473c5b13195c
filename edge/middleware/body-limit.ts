import type { MiddlewareHandler } from "hono";
import { AppError } from "../../shared/errors.ts";
import { TUNNEL_CHUNK_BYTES } from "../../shared/tunnel.ts";
import type { AppEnv } from "../app-env.ts";
import { BODY_END_MARK_BYTES, type StreamedBody, toHex } from "../relay/protocol.ts";

/**
 * Refuse more than the limit with 413: by Content-Length up front, and by counting while reading
 * (a chunked body has no length to trust). A request body (MAX_BODY_BYTES) is buffered for the
 * handler; a file upload (MAX_FILE_BYTES) is only counted as it streams through to the agent, so
 * the Worker never holds it: past the limit its stream ends without its end mark (the DO
 * refuses it, the agent commits nothing) and the answer is 413.
 *
 * A refusal sent while the client is still uploading, followed by closing the connection, can
 * reset it: the client's write fails and the 413 it was sent is lost with the connection (seen
 * locally about once in 30 uploads of 16 MiB). So a body up to DRAIN_ALLOWANCE_BYTES over the
 * limit is read to its end and dropped first, and the client reads a clear 413; a larger one is
 * refused at once (the reset is then the cheaper answer).
 */
const DRAIN_ALLOWANCE_BYTES = 32 * 1024 * 1024;

export function bodyLimit(kind: "request" | "file" = "request"): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const config = c.get("deps").config;
    const max = kind === "file" ? config.maxFileBytes : config.maxBodyBytes;
    const drainUpTo = max + DRAIN_ALLOWANCE_BYTES;
    const tooLarge = () => new AppError("payload_too_large", `request body is larger than ${max} bytes`);
    const declared = c.req.header("Content-Length");
    const stream = c.req.raw.body;
    if (declared !== undefined && Number(declared) > max) {
      if (stream && Number(declared) <= drainUpTo) await drain(stream.getReader(), 0, drainUpTo);
      throw tooLarge();
    }
    if (kind === "file") {
      let over = false;
      c.set(
        "bodyStream",
        countedUpload(stream, max, () => {
          over = true;
        }),
      );
      await next();
      if (over) throw tooLarge();
      return;
    }
    if (!stream) {
      c.set("body", new Uint8Array(0));
      return next();
    }
    const reader = stream.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        parts.length = 0;
        await drain(reader, size, drainUpTo);
        throw tooLarge();
      }
      parts.push(value);
    }
    const body = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.byteLength;
    }
    c.set("body", body);
    await next();
  };
}

/**
 * A file upload as it streams on, counted: the end mark follows only a clean end within `max`.
 * Past `max` it just ends, without the mark (so the DO signs no trailer and the agent commits
 * nothing) — ended, not errored: an errored subrequest body is reported by workerd as uncaught.
 */
export function countedUpload(
  source: ReadableStream<Uint8Array> | null,
  max: number,
  onOver: () => void,
): StreamedBody {
  const mark = crypto.getRandomValues(new Uint8Array(BODY_END_MARK_BYTES));
  // Whole chunk-frame sized reads (workerd hands a body over in 4 KiB pieces otherwise): each
  // read is a promise and a hop through the DO's stream, so 32× fewer of them is most of an
  // upload's cost at the edge.
  const reader = source?.getReader({ mode: "byob" });
  let size = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(out) {
        const next = reader
          ? await reader.readAtLeast(TUNNEL_CHUNK_BYTES, new Uint8Array(TUNNEL_CHUNK_BYTES))
          : { done: true as const, value: undefined };
        if (!next.done && next.value.byteLength === 0) return;
        if (next.done) {
          out.enqueue(mark);
          return out.close();
        }
        size += next.value.byteLength;
        if (size <= max) return out.enqueue(next.value);
        onOver();
        out.close();
        await reader?.cancel().catch(() => {});
      },
      cancel: (why) => reader?.cancel(why),
    },
    { highWaterMark: 0 },
  );
  return { stream, endMark: toHex(mark) };
}

/** Reads and drops the rest of a refused body; past `limit` bytes in all it stops and cancels. */
async function drain(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  read: number,
  limit: number,
): Promise<void> {
  let total = read;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      total += value.byteLength;
      if (total > limit) break;
    }
  } catch {
    return; // the client gave up first: nothing left to answer
  }
  await reader.cancel().catch(() => {});
}
