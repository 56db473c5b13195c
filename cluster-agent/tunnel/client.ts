import type { IncomingMessage } from "node:http";
import type { JWK } from "jose";
import WebSocket from "ws";
import { BodyQueue } from "../../shared/body-queue.ts";
import { AppError, ErrorEnvelopeSchema, type Result } from "../../shared/errors.ts";
import {
  type Capacity,
  ChunkSequencer,
  DATA_KIND,
  type DataFrame,
  type DataKind,
  dataToWsMessage,
  decodeDataFrame,
  decodeFrame,
  encodeDataFrame,
  encodeFrame,
  fromBase64,
  headersToPairs,
  pairsToHeaders,
  type RequestFrame,
  signAgentToken,
  TUNNEL_CHUNK_BYTES,
  TUNNEL_CREDIT_BATCH_BYTES,
  TUNNEL_INITIAL_WINDOW_BYTES,
  TUNNEL_INLINE_BODY_BYTES,
  TUNNEL_PATH,
  TUNNEL_WS_CREDIT_BATCH_BYTES,
  TUNNEL_WS_MAX_MESSAGE_BYTES,
  TUNNEL_WS_WINDOW_BYTES,
  type TunnelFrame,
  toBase64,
  wsMessageCost,
  wsMessageToData,
} from "../../shared/tunnel.ts";
import { attachBodyTrailer } from "./body-trailer.ts";
import {
  markWebSocketRequest,
  sessionOf,
  type WebSocketSession,
  type WsClose,
  type WsMessage,
} from "./ws-session.ts";

/**
 * The agent's end of the tunnel: dials OUT to the edge (the cluster exposes no port), logs in
 * with a short JWT signed by the region's agent key, and serves each relayed request by calling
 * `handler` (the agent app's fetch). A request body that follows in chunk frames is handed to the
 * handler as a stream at once and credited back as the handler reads it (the agent never holds a
 * whole upload); its signed trailer is attached to the Request (body-trailer.ts). Response bodies
 * stream back in binary chunk frames. An upgrade frame becomes a marked GET (ws-session.ts): a
 * route that accepts it returns a session, pumped here both ways under the session's credit
 * window until either side closes; a cancel frame
 * aborts the request's signal; a dropped socket aborts everything in flight and reconnects with
 * jittered exponential backoff.
 */

export interface TunnelLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface TunnelClientOptions {
  /** The edge's base URL: http(s):// or ws(s)://, e.g. https://edge.example.com */
  edgeUrl: string;
  region: string;
  agentId: string;
  /** The cluster this agent serves (announced in its login token; default "default"). */
  cluster?: string;
  /** The region's agent private key (Ed25519 JWK). */
  privateJwk: JWK;
  handler: (request: Request) => Promise<Response>;
  /** Pool capacity for heartbeats; without it heartbeats are not sent. */
  capacity?: () => Capacity;
  heartbeatMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /** WebSocket handshake timeout. */
  connectTimeoutMs?: number;
  /** How long close() waits for in-flight requests before dropping them. */
  closeGraceMs?: number;
  logger?: TunnelLogger;
}

export type TunnelState = "connecting" | "open" | "backoff" | "closed";

export interface TunnelClient {
  readonly state: TunnelState;
  /** Requests being served right now. */
  readonly inflight: number;
  /** Successful logins so far (1 after the first, +1 per reconnect). */
  readonly connections: number;
  /** Resolves when the tunnel is open (rejects after `timeoutMs`). */
  waitOpen(timeoutMs?: number): Promise<void>;
  /** Drop the socket as a network failure would (in-flight requests fail); the client redials. */
  dropConnection(): void;
  /** Stop reconnecting, let in-flight requests finish (up to closeGraceMs), close with 1000. */
  close(): Promise<void>;
}

interface Inflight {
  abort: AbortController;
  /** Response-body bytes we may still send before the edge credits more. */
  window: number;
  windowWaiter: (() => void) | null;
  /** A request body arriving in chunk frames, read by the handler as it comes. */
  upload: Upload | null;
  /** An accepted WebSocket session (set once the route accepted the upgrade). */
  session: SessionState | null;
  /** Data frames sent to the edge for this id (a session's messages: its ws-close counts them). */
  sentMessages: number;
  done: Promise<void> | null;
}

/** The agent's side of one WebSocket session: the client's messages in order, one at a time. */
interface SessionState {
  s: WebSocketSession;
  /** The tunnel socket the session lives on (a reconnect does not carry it over). */
  sock: WebSocket;
  incoming: ChunkSequencer<DataFrame>;
  /** In order, waiting for `receive` (bounded by the edge's window: it honours our credit). */
  queue: DataFrame[];
  queuedBytes: number;
  delivering: boolean;
  delivered: number;
  uncredited: number;
  /** The edge's ws-close, applied once every message before it was delivered. */
  closeAfter: { close: WsClose; messages: number } | null;
  ended: boolean;
}

interface Upload {
  queue: BodyQueue;
  seq: ChunkSequencer;
  /** From the end frame; handed over once every chunk before it was delivered. */
  endTrailer: string | null;
  settleTrailer: (trailer: string | null) => void;
  /** What the handler's relay check awaits (attached to its Request). */
  trailer: Promise<string | null>;
}

const noopLogger: TunnelLogger = { info() {}, warn() {} };

export function tunnelUrl(edgeUrl: string, region: string): string {
  const u = new URL(TUNNEL_PATH, edgeUrl);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  u.searchParams.set("region", region);
  return u.toString();
}

/** Exponential backoff with "equal jitter": uniform in [cap/2, cap], cap = min(max, initial·2^attempt). */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

export function startTunnelClient(opts: TunnelClientOptions): TunnelClient {
  const log = opts.logger ?? noopLogger;
  const heartbeatMs = opts.heartbeatMs ?? 10_000;
  const initialMs = opts.backoff?.initialMs ?? 250;
  const maxMs = opts.backoff?.maxMs ?? 15_000;
  const url = tunnelUrl(opts.edgeUrl, opts.region);
  const inflight = new Map<string, Inflight>();

  let state: TunnelState = "connecting";
  let ws: WebSocket | null = null;
  let attempt = 0;
  let connections = 0;
  let closing = false;
  let retryTimer: NodeJS.Timeout | null = null;
  let beatTimer: NodeJS.Timeout | null = null;
  let lastPong = Date.now();
  const openWaiters = new Set<() => void>();

  function setState(s: TunnelState): void {
    state = s;
    if (s === "open") for (const w of openWaiters) w();
  }

  async function connect(): Promise<void> {
    if (closing) return;
    setState("connecting");
    let token: string;
    try {
      token = await signAgentToken({
        privateJwk: opts.privateJwk,
        agentId: opts.agentId,
        region: opts.region,
        ...(opts.cluster !== undefined ? { cluster: opts.cluster } : {}),
      });
    } catch (e) {
      log.warn({ err: String(e) }, "tunnel: cannot sign agent token");
      return scheduleReconnect();
    }
    if (closing) return;
    const sock = new WebSocket(url, {
      headers: { Authorization: `Bearer ${token}` },
      handshakeTimeout: opts.connectTimeoutMs ?? 10_000,
      perMessageDeflate: false,
    });
    ws = sock;
    sock.on("unexpected-response", (_req, res) => {
      // Why, in the edge's words (e.g. a key not bound to this cluster): read before terminating.
      void refusalOf(res).then((why) => {
        log.warn({ status: res.statusCode, ...why }, "tunnel: edge refused the connection");
        sock.terminate();
      });
    });
    sock.on("open", () => {
      attempt = 0;
      connections++;
      lastPong = Date.now();
      setState("open");
      log.info({ url, agentId: opts.agentId, region: opts.region }, "tunnel: connected");
      heartbeat();
      beatTimer = setInterval(heartbeat, heartbeatMs);
    });
    sock.on("pong", () => {
      lastPong = Date.now();
    });
    sock.on("message", (data, isBinary) => {
      if (isBinary) onData(sock, oneBuffer(data));
      else onFrame(sock, data.toString());
    });
    sock.on("error", (e) => log.warn({ err: e.message }, "tunnel: socket error"));
    sock.on("close", (code) => {
      if (beatTimer) clearInterval(beatTimer);
      beatTimer = null;
      if (ws === sock) ws = null;
      // The edge has already failed these requests; stop the work behind them.
      for (const [id, f] of inflight) {
        f.abort.abort(new Error("tunnel closed"));
        inflight.delete(id);
        endSession(f, { code: 1001, reason: "tunnel closed" });
      }
      if (closing) {
        setState("closed");
        return;
      }
      log.warn({ code }, "tunnel: disconnected");
      scheduleReconnect();
    });
  }

  function scheduleReconnect(): void {
    if (closing) return;
    setState("backoff");
    const delay = backoffDelay(attempt++, initialMs, maxMs);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      void connect();
    }, delay);
  }

  function heartbeat(): void {
    const sock = ws;
    if (!sock || sock.readyState !== WebSocket.OPEN) return;
    // Protocol pings detect a dead path that TCP would not report for minutes.
    if (Date.now() - lastPong > heartbeatMs * 3) {
      log.warn({}, "tunnel: no pong, reconnecting");
      sock.terminate();
      return;
    }
    sock.ping();
    if (opts.capacity) {
      send(sock, {
        type: "heartbeat",
        agentId: opts.agentId,
        region: opts.region,
        capacity: opts.capacity(),
      });
    }
  }

  function onFrame(sock: WebSocket, text: string): void {
    const decoded = decodeFrame(text);
    if (!decoded.ok) {
      log.warn({ err: decoded.error.message }, "tunnel: bad frame");
      return;
    }
    const frame = decoded.value;
    switch (frame.type) {
      case "request": {
        if (closing) {
          send(sock, {
            type: "error",
            id: frame.id,
            code: "shutting_down",
            message: "agent is shutting down",
          });
          return;
        }
        const f: Inflight = {
          abort: new AbortController(),
          window: frame.websocket ? TUNNEL_WS_WINDOW_BYTES : TUNNEL_INITIAL_WINDOW_BYTES,
          windowWaiter: null,
          upload: null,
          session: null,
          sentMessages: 0,
          done: null,
        };
        inflight.set(frame.id, f);
        if (frame.websocket) serve(sock, frame, new Uint8Array(0), f);
        else if (frame.bodyFollows) {
          const upload = startUpload(sock, frame.id, f);
          serve(sock, frame, upload.queue.stream, f, upload);
        } else serve(sock, frame, frame.body ? fromBase64(frame.body) : new Uint8Array(0), f);
        return;
      }
      case "end": {
        const f = inflight.get(frame.id);
        const up = f?.upload;
        if (!f || !up) return;
        up.endTrailer = frame.trailer ?? null;
        advanceUpload(sock, frame.id, f, up, up.seq.end(frame.chunks));
        return;
      }
      case "ws-close": {
        const f = inflight.get(frame.id);
        const ss = f?.session;
        if (!f || !ss) return;
        ss.closeAfter = { close: { code: frame.code, reason: frame.reason }, messages: frame.messages };
        const r = ss.incoming.end(frame.messages);
        if (!r.ok) {
          endSession(f, { code: 1002, reason: "bad close" }, frame.id);
          return;
        }
        pumpIncoming(sock, frame.id, f);
        return;
      }
      case "credit": {
        const f = inflight.get(frame.id);
        if (f) {
          f.window += frame.bytes;
          const w = f.windowWaiter;
          f.windowWaiter = null;
          w?.();
        }
        return;
      }
      case "cancel": {
        const f = inflight.get(frame.id);
        if (f) {
          f.abort.abort(new Error("cancelled by the edge"));
          inflight.delete(frame.id);
          endSession(f, { code: 1001, reason: "cancelled" });
        }
        return;
      }
      default:
        return;
    }
  }

  /** A binary data frame: a slice of an upload, or a message of a session. */
  function onData(sock: WebSocket, bytes: Uint8Array): void {
    const decoded = decodeDataFrame(bytes);
    if (!decoded.ok) {
      log.warn({ err: decoded.error.message }, "tunnel: bad data frame");
      return;
    }
    const d = decoded.value;
    const f = inflight.get(d.id);
    if (!f) return;
    if (d.kind === DATA_KIND.chunk) {
      const up = f.upload;
      if (up) advanceUpload(sock, d.id, f, up, up.seq.push(d.seq, d.bytes));
      return;
    }
    const ss = f.session;
    if (!ss || ss.ended) return;
    const r = ss.incoming.push(d.seq, d);
    if (!r.ok) {
      endSession(f, { code: 1002, reason: "bad message order" }, d.id);
      return;
    }
    for (const m of r.value) {
      ss.queue.push(m);
      ss.queuedBytes += wsMessageCost(m.bytes.byteLength);
    }
    // The edge sends only what we credited: more than the window queued is a broken peer.
    if (ss.queuedBytes > TUNNEL_WS_WINDOW_BYTES) {
      endSession(f, { code: 1008, reason: "credit exceeded" }, d.id);
      return;
    }
    pumpIncoming(sock, d.id, f);
  }

  /** Upload chunks now in order go to the handler; the end completes it once all came. */
  function advanceUpload(
    sock: WebSocket,
    id: string,
    f: Inflight,
    up: Upload,
    r: Result<Uint8Array[] | undefined>,
  ): void {
    if (!r.ok) {
      f.abort.abort(new Error(r.error.message));
      inflight.delete(id);
      send(sock, { type: "error", id, code: "invalid_request", message: r.error.message });
      return;
    }
    for (const b of r.value ?? []) up.queue.push(b);
    if (up.seq.complete) {
      f.upload = null;
      up.settleTrailer(up.endTrailer);
      up.queue.end();
    }
  }

  /** Hand the session the client's messages one at a time; credit each once it was taken. */
  function pumpIncoming(sock: WebSocket, id: string, f: Inflight): void {
    const ss = f.session;
    if (!ss || ss.delivering || ss.ended) return;
    ss.delivering = true;
    void (async () => {
      try {
        for (let m = ss.queue.shift(); m !== undefined && !ss.ended; m = ss.queue.shift()) {
          const cost = wsMessageCost(m.bytes.byteLength);
          await ss.s.receive(dataToWsMessage(m));
          ss.queuedBytes -= cost;
          ss.delivered++;
          ss.uncredited += cost;
          if (ss.uncredited >= TUNNEL_WS_CREDIT_BATCH_BYTES && inflight.get(id) === f) {
            send(sock, { type: "credit", id, bytes: ss.uncredited });
            ss.uncredited = 0;
          }
        }
        ss.delivering = false;
        if (ss.closeAfter && ss.delivered >= ss.closeAfter.messages) {
          inflight.delete(id);
          endSession(f, ss.closeAfter.close);
        }
      } catch (e) {
        ss.delivering = false;
        log.warn({ err: String(e), id }, "tunnel: session failed a message");
        endSession(f, { code: 1011, reason: "session error" }, id);
      }
    })();
  }

  /**
   * End a session once (idempotent): the session hears why, its outgoing stream is cancelled, and
   * when `tellEdge` names the id the edge gets a ws-close (an end the edge did not start).
   */
  function endSession(f: Inflight, close: WsClose, tellEdge?: string): void {
    const ss = f.session;
    if (!ss || ss.ended) return;
    ss.ended = true;
    ss.queue.length = 0;
    try {
      ss.s.close(close);
    } catch (e) {
      log.warn({ err: String(e) }, "tunnel: session close failed");
    }
    if (!f.abort.signal.aborted) f.abort.abort(new Error(`session closed (${close.code})`));
    if (tellEdge !== undefined) {
      send(ss.sock, { type: "ws-close", id: tellEdge, ...close, messages: f.sentMessages });
      inflight.delete(tellEdge);
    }
  }

  /**
   * The session's messages to the client: each waits for the edge's credit (the client's pace),
   * then for the socket write. Its end is the client's close.
   */
  async function pumpOutgoing(sock: WebSocket, id: string, f: Inflight, ss: SessionState): Promise<void> {
    const reader = ss.s.outgoing.getReader();
    const signal = f.abort.signal;
    const onAbort = () => {
      void reader.cancel().catch(() => undefined);
      f.windowWaiter?.();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    let close: WsClose = { code: 1000, reason: "" };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || signal.aborted) break;
        const { kind, bytes } = wsMessageToData(value as WsMessage);
        if (bytes.byteLength > TUNNEL_WS_MAX_MESSAGE_BYTES) {
          close = { code: 1009, reason: "message too big" };
          break;
        }
        const cost = wsMessageCost(bytes.byteLength);
        while (f.window < cost && !signal.aborted) {
          await new Promise<void>((resolve) => {
            f.windowWaiter = resolve;
          });
        }
        if (signal.aborted) break;
        f.window -= cost;
        await sendData(sock, kind, id, f.sentMessages++, bytes);
      }
      if (!signal.aborted && close.code === 1000) close = ss.s.closeWith?.() ?? close;
    } catch (e) {
      if (!signal.aborted) log.warn({ err: String(e), id }, "tunnel: session output failed");
      close = { code: 1011, reason: "session error" };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    if (!ss.ended) endSession(f, close, id);
  }

  /**
   * The receiving side of a streamed request body: chunks queue until the handler reads them, and
   * what it read is credited back in batches, so the edge never has more than the window in flight.
   */
  function startUpload(sock: WebSocket, id: string, f: Inflight): Upload {
    let uncredited = 0;
    let settleTrailer: (t: string | null) => void = () => {};
    const trailer = new Promise<string | null>((resolve) => {
      settleTrailer = resolve;
    });
    const queue = new BodyQueue(
      () => {},
      (bytes) => {
        uncredited += bytes;
        if (uncredited >= TUNNEL_CREDIT_BATCH_BYTES && inflight.get(id) === f) {
          send(sock, { type: "credit", id, bytes: uncredited });
          uncredited = 0;
        }
      },
    );
    const up: Upload = { queue, seq: new ChunkSequencer(), endTrailer: null, settleTrailer, trailer };
    f.upload = up;
    // Cancelled or the tunnel dropped: the handler's read fails, the half-written file is dropped.
    f.abort.signal.addEventListener(
      "abort",
      () => {
        queue.fail(new AppError("request_cancelled", "the upload was cancelled"));
        settleTrailer(null);
      },
      { once: true },
    );
    return up;
  }

  function serve(
    sock: WebSocket,
    frame: RequestFrame,
    body: Uint8Array | ReadableStream<Uint8Array>,
    f: Inflight,
    upload?: Upload,
  ): void {
    f.done = (async () => {
      const id = frame.id;
      const signal = f.abort.signal;
      try {
        const hasBody = frame.method !== "GET" && frame.method !== "HEAD";
        const request = new Request(`http://agent.tunnel${frame.path}`, {
          method: frame.method,
          headers: pairsToHeaders(frame.headers),
          body: hasBody ? (body as Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>) : null,
          signal,
          ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
        } as RequestInit);
        if (upload && frame.bodyInTrailer) attachBodyTrailer(request, upload.trailer);
        if (frame.websocket) markWebSocketRequest(request);
        const response = await opts.handler(request);
        const session = sessionOf(response);
        if (signal.aborted) {
          await response.body?.cancel().catch(() => undefined);
          session?.close({ code: 1001, reason: "cancelled" });
          return;
        }
        if (session) {
          if (!frame.websocket) throw new Error("a session answered a request that is not an upgrade");
          const ss: SessionState = {
            s: session,
            sock,
            incoming: new ChunkSequencer<DataFrame>(),
            queue: [],
            queuedBytes: 0,
            delivering: false,
            delivered: 0,
            uncredited: 0,
            closeAfter: null,
            ended: false,
          };
          f.session = ss;
          await sendAsync(sock, {
            type: "response",
            id,
            status: 101,
            headers: headersToPairs(response.headers),
          });
          await pumpOutgoing(sock, id, f, ss);
          return;
        }
        const head = {
          type: "response",
          id,
          status: response.status,
          headers: headersToPairs(response.headers),
        } as const;
        // A JSON answer is complete in memory already: a small one goes whole in the head frame,
        // a larger one is chunked like any body.
        let out = response.body;
        if (out && isJson(response.headers)) {
          const bytes = new Uint8Array(await response.arrayBuffer());
          if (signal.aborted) return;
          if (bytes.byteLength <= TUNNEL_INLINE_BODY_BYTES) {
            f.window -= bytes.byteLength;
            await sendAsync(sock, { ...head, body: toBase64(bytes) });
            return;
          }
          out = new Response(bytes).body;
        }
        await sendAsync(sock, head);
        let seq = 0;
        if (out) {
          const reader = out.getReader();
          const onAbort = () => {
            void reader.cancel().catch(() => undefined);
            f.windowWaiter?.();
          };
          signal.addEventListener("abort", onAbort, { once: true });
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done || signal.aborted) break;
              for (let i = 0; i < value.byteLength; i += TUNNEL_CHUNK_BYTES) {
                const part = value.subarray(i, i + TUNNEL_CHUNK_BYTES);
                // Backpressure twice over: the edge's credit window (its client's reading pace)
                // and the socket write itself.
                while (f.window < part.byteLength && !signal.aborted) {
                  await new Promise<void>((resolve) => {
                    f.windowWaiter = resolve;
                  });
                }
                if (signal.aborted) break;
                f.window -= part.byteLength;
                await sendData(sock, DATA_KIND.chunk, id, seq++, part);
              }
            }
          } finally {
            signal.removeEventListener("abort", onAbort);
          }
        }
        if (!signal.aborted) await sendAsync(sock, { type: "end", id, chunks: seq });
      } catch (e) {
        if (f.session) endSession(f, { code: 1011, reason: "session error" }, id);
        else if (!signal.aborted && sock.readyState === WebSocket.OPEN) {
          log.warn({ err: String(e), id }, "tunnel: handler failed");
          send(sock, { type: "error", id, code: "internal", message: "agent failed to serve the request" });
        }
      } finally {
        inflight.delete(id);
      }
    })();
  }

  function send(sock: WebSocket, frame: TunnelFrame): void {
    if (sock.readyState === WebSocket.OPEN) sock.send(encodeFrame(frame));
  }

  function sendAsync(sock: WebSocket, frame: TunnelFrame): Promise<void> {
    return new Promise((resolve, reject) => {
      if (sock.readyState !== WebSocket.OPEN) return reject(new Error("tunnel closed"));
      sock.send(encodeFrame(frame), (e) => (e ? reject(e) : resolve()));
    });
  }

  function sendData(
    sock: WebSocket,
    kind: DataKind,
    id: string,
    seq: number,
    bytes: Uint8Array,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      if (sock.readyState !== WebSocket.OPEN) return reject(new Error("tunnel closed"));
      sock.send(encodeDataFrame(kind, id, seq, bytes), { binary: true }, (e) => (e ? reject(e) : resolve()));
    });
  }

  void connect();

  return {
    get state() {
      return state;
    },
    get inflight() {
      return inflight.size;
    },
    get connections() {
      return connections;
    },
    dropConnection() {
      ws?.terminate();
    },
    waitOpen(timeoutMs = 10_000) {
      if (state === "open") return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          openWaiters.delete(done);
          reject(new Error(`tunnel not open after ${timeoutMs} ms (state ${state})`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          openWaiters.delete(done);
          resolve();
        };
        openWaiters.add(done);
      });
    },
    async close() {
      if (closing) return;
      closing = true;
      if (retryTimer) clearTimeout(retryTimer);
      const pending = [...inflight.values()].map((f) => f.done).filter((p): p is Promise<void> => p !== null);
      const grace = new Promise<void>((r) => setTimeout(r, opts.closeGraceMs ?? 5000).unref());
      await Promise.race([Promise.allSettled(pending), grace]);
      for (const f of inflight.values()) f.abort.abort(new Error("agent shutting down"));
      const sock = ws;
      if (!sock || sock.readyState === WebSocket.CLOSED) {
        setState("closed");
        return;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          sock.terminate();
          resolve();
        }, 2000);
        sock.once("close", () => {
          clearTimeout(t);
          resolve();
        });
        if (sock.readyState === WebSocket.CONNECTING) sock.terminate();
        else sock.close(1000, "agent closing");
      });
      setState("closed");
    },
  };
}

/**
 * A binary message as one Buffer, copied only when ws hands it over in fragments: Buffer.concat
 * copies even a single buffer, and at 128 KiB per chunk frame that copy (and the garbage it
 * leaves) was a third of what an upload cost the agent.
 */
function oneBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data);
  return Buffer.from(data as ArrayBuffer);
}

function isJson(headers: Headers): boolean {
  return (headers.get("content-type") ?? "").toLowerCase().startsWith("application/json");
}

/** The code and message of the edge's refusal of a login (its error envelope), read within 4 KiB and 2 s. */
function refusalOf(res: IncomingMessage): Promise<{ code?: string; message?: string }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      res.removeAllListeners("data");
      res.resume();
      try {
        const env = ErrorEnvelopeSchema.safeParse(JSON.parse(Buffer.concat(parts).toString("utf8")));
        resolve(env.success ? { code: env.data.error.code, message: env.data.error.message } : {});
      } catch {
        resolve({});
      }
    };
    const timer = setTimeout(done, 2000);
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 4096) parts.push(chunk);
    });
    res.once("end", done);
    res.once("error", done);
  });
}
