/**
 * The SDK's own SSE reader, the one copy outside `shared/sse.ts`: the package may import `shared/`
 * for types only (docs/architecture.md §2), since it is published on its own and must not load
 * the repository's modules at run time. Keep it equivalent to the shared codec's `readSse`
 * (LF/CRLF/CR line ends, multi-line data, comments skipped).
 */
export interface SseMessage {
  event: string;
  data: string;
}

/** Server-sent events of a response body, as they arrive; comments (`: ping`) are skipped. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      if (done) buf += decoder.decode();
      // The spec allows CRLF and CR line ends; the edge sends LF, a proxy may not.
      buf = buf.replace(/\r\n?/g, "\n");
      let cut = buf.indexOf("\n\n");
      while (cut >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        cut = buf.indexOf("\n\n");
        let event = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length > 0) yield { event, data: data.join("\n") };
      }
      if (done) return;
    }
  } finally {
    // Ending early (break, error, abort) cancels the body, which tells the server we went away.
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
