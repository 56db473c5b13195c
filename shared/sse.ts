/**
 * The one server-sent-events codec (WHATWG HTML §9.2): every producer and consumer of an SSE
 * stream in the project — the agent's streamed routes, the edge's relays and merges, the
 * dashboard, devstack, tests and bench — frames and parses through this module, so line ends
 * (LF, CRLF, CR), multi-line `data:`, comments and ids are handled one way.
 *
 * Web-standard APIs only: it runs in Node, in workerd and in the browser bundle.
 */

export interface SseMessage {
  /** `message` when the block names none, as the spec says. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen in this block, if any. */
  id?: string;
  /** `retry:` in milliseconds, if the block set one. */
  retry?: number;
}

/** One event as bytes on the wire. Multi-line data becomes one `data:` line per line. */
export function encodeSse(msg: { event?: string; data: string; id?: string }): string {
  let out = "";
  if (msg.id !== undefined) out += `id: ${msg.id}\n`;
  if (msg.event !== undefined && msg.event !== "message") out += `event: ${msg.event}\n`;
  for (const line of msg.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line (`: ping`), which every reader ignores: keeps idle connections open. */
export function encodeSseComment(text: string): string {
  return `: ${text.replace(/[\r\n]+/g, " ")}\n\n`;
}

/**
 * Incremental parser: feed decoded text as it arrives, get the complete events so far.
 * A trailing CR is held back until the next chunk, since it may be the first half of a CRLF.
 */
export class SseParser {
  #buf = "";
  #event = "";
  #data: string[] = [];
  #id: string | undefined;
  #retry: number | undefined;
  #sawField = false;

  push(text: string): SseMessage[] {
    this.#buf += text;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buf);
      if (!m) break;
      // A CR at the very end may be half of a CRLF split across chunks.
      if (m[0] === "\r" && m.index === this.#buf.length - 1) break;
      const line = this.#buf.slice(0, m.index);
      this.#buf = this.#buf.slice(m.index + m[0].length);
      const msg = this.#line(line);
      if (msg) out.push(msg);
    }
    return out;
  }

  /** The stream ended: a block without its closing blank line is discarded, as the spec says. */
  end(): SseMessage[] {
    const out = this.#buf.endsWith("\r") ? this.push("\n") : [];
    this.#buf = "";
    this.#reset();
    return out;
  }

  #line(line: string): SseMessage | undefined {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    this.#sawField = true;
    switch (field) {
      case "event":
        this.#event = value;
        break;
      case "data":
        this.#data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.#id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
    }
    return undefined;
  }

  #dispatch(): SseMessage | undefined {
    const had = this.#sawField && this.#data.length > 0;
    const msg: SseMessage = { event: this.#event || "message", data: this.#data.join("\n") };
    if (this.#id !== undefined) msg.id = this.#id;
    if (this.#retry !== undefined) msg.retry = this.#retry;
    this.#reset();
    return had ? msg : undefined;
  }

  #reset(): void {
    this.#event = "";
    this.#data = [];
    this.#id = undefined;
    this.#retry = undefined;
    this.#sawField = false;
  }
}

/** Parse a whole SSE text (a test's captured body, a buffered response). */
export function parseSse(text: string): SseMessage[] {
  const p = new SseParser();
  return [...p.push(text), ...p.end()];
}

/**
 * The events of a response body as they arrive. Ending early (break, throw, abort) cancels the
 * body, which tells the server the reader went away.
 */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        for (const m of parser.push(decoder.decode())) yield m;
        for (const m of parser.end()) yield m;
        return;
      }
      for (const m of parser.push(decoder.decode(value, { stream: true }))) yield m;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/**
 * Splits a byte stream into whole raw event blocks (each ending with its blank line, line ends
 * normalised to LF) without parsing fields: for relays that pass events on unread but must never
 * interleave two sources mid-event.
 */
export class SseBlockSplitter {
  #buf = "";
  push(text: string): string[] {
    this.#buf += text;
    const cr = this.#buf.endsWith("\r");
    const body = cr ? this.#buf.slice(0, -1) : this.#buf;
    const norm = body.replace(/\r\n?/g, "\n");
    const cut = norm.lastIndexOf("\n\n");
    if (cut < 0) {
      this.#buf = norm + (cr ? "\r" : "");
      return [];
    }
    this.#buf = norm.slice(cut + 2) + (cr ? "\r" : "");
    return [norm.slice(0, cut + 2)];
  }
}
