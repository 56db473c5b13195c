import {
  ProcessExitEventSchema,
  ProcessOutputEventSchema,
  TerminalClientMessageSchema,
  type TerminalServerMessage,
} from "../../shared/api.ts";
import type { AppError, Result } from "../../shared/errors.ts";
import { readSse } from "../../shared/sse.ts";
import { TUNNEL_WS_MAX_MESSAGE_BYTES } from "../../shared/tunnel.ts";
import type { WebSocketSession, WsClose, WsMessage } from "../tunnel/ws-session.ts";

/** What a terminal needs of one tty process, all through the one exec-server client. */
export interface TerminalOps {
  /** The exec server's SSE output stream of the process (from the ring, at the attach offset). */
  output: ReadableStream<Uint8Array>;
  stdin(bytes: Uint8Array): Promise<Result<unknown>>;
  resize(size: { cols: number; rows: number }): Promise<Result<unknown>>;
  /** The session ended (either side): stop the stream, end the sandbox use. Never kills the process. */
  end(): void;
}

/**
 * A terminal as a WebSocket session: output events become binary messages (the ring's bytes,
 * exact), the exit event a JSON `exit` message and a 1000 close; binary messages from the client
 * go to stdin, JSON `{type:"resize",cols,rows}` resizes. A refused message (stdin_busy, a bad
 * resize) is answered with a JSON `error` message and the terminal stays open; each client message
 * is taken only once the exec server answered it, which is the session's backpressure.
 */
export function terminalSession(ops: TerminalOps): WebSocketSession {
  const events = readSse(ops.output);
  let exited = false;
  let broken: string | null = null;
  let out: ReadableStreamDefaultController<WsMessage> | null = null;
  const tell = (m: TerminalServerMessage) => {
    try {
      out?.enqueue(JSON.stringify(m));
    } catch {
      // the stream already ended: nobody to tell
    }
  };
  const refused = (e: AppError) => tell({ type: "error", code: e.code, message: e.message });

  const outgoing = new ReadableStream<WsMessage>(
    {
      start(c) {
        out = c;
      },
      async pull(c) {
        // One SSE event per pull: the tunnel pulls only as its credit allows.
        for (;;) {
          let next: IteratorResult<{ event?: string; data: string }>;
          try {
            next = await events.next();
          } catch (e) {
            broken = e instanceof Error ? e.message : String(e);
            next = { done: true, value: undefined };
          }
          if (next.done) {
            if (!exited && broken === null) broken = "the output stream ended before the process";
            c.close();
            return;
          }
          const m = next.value;
          if (m.event === "output") {
            const ev = ProcessOutputEventSchema.safeParse(safeJson(m.data));
            if (!ev.success) continue;
            if (ev.data.dropped > 0) tell({ type: "dropped", bytes: ev.data.dropped });
            const bytes = Buffer.from(ev.data.data, "base64");
            for (let i = 0; i < bytes.byteLength; i += TUNNEL_WS_MAX_MESSAGE_BYTES)
              c.enqueue(new Uint8Array(bytes.subarray(i, i + TUNNEL_WS_MAX_MESSAGE_BYTES)));
            return;
          }
          if (m.event === "exit") {
            const ev = ProcessExitEventSchema.safeParse(safeJson(m.data));
            exited = true;
            if (ev.success) tell({ type: "exit", ...ev.data });
            c.close();
            return;
          }
        }
      },
      async cancel() {
        await events.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );

  let ended = false;
  return {
    outgoing,
    async receive(msg: WsMessage) {
      if (typeof msg !== "string") {
        const r = await ops.stdin(msg);
        if (!r.ok) refused(r.error);
        return;
      }
      const parsed = TerminalClientMessageSchema.safeParse(safeJson(msg));
      if (!parsed.success) {
        tell({
          type: "error",
          code: "invalid_request",
          message: 'a text message must be {"type":"resize","cols":N,"rows":N}',
        });
        return;
      }
      const r = await ops.resize({ cols: parsed.data.cols, rows: parsed.data.rows });
      if (!r.ok) refused(r.error);
    },
    close(_c: WsClose) {
      if (ended) return;
      ended = true;
      void events.return(undefined);
      ops.end();
    },
    closeWith(): WsClose {
      // The process ended: a normal close. Otherwise the sandbox went away under the terminal.
      return exited ? { code: 1000, reason: "exited" } : { code: 1011, reason: (broken ?? "").slice(0, 100) };
    },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
