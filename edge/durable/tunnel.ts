import { DurableObject } from "cloudflare:workers";
import { decodeJwt } from "jose";
import { BodyQueue } from "../../shared/body-queue.ts";
import { AppError, errorResponse } from "../../shared/errors.ts";
import { digestToBase64url, RELAY_HEADER } from "../../shared/relay-signing.ts";
import {
  ByteQueue,
  type Capacity,
  ChunkSequencer,
  chunkBytes,
  DATA_KIND,
  type DataFrame,
  type DataKind,
  DEFAULT_CLUSTER,
  dataToWsMessage,
  decodeDataFrame,
  decodeFrame,
  encodeDataFrame,
  encodeFrame,
  fromBase64,
  headersToPairs,
  pairsToHeaders,
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
  verifyAgentToken,
  wsMessageCost,
  wsMessageToData,
} from "../../shared/tunnel.ts";
import { loadConfig } from "../config.ts";
import type { Env } from "../env.ts";
import {
  BODY_END_MARK_BYTES,
  TUNNEL_AGENTS_PATH,
  TUNNEL_BUFFER_BUDGET_BYTES,
  TUNNEL_CANCEL_PATH,
  TUNNEL_HEADERS,
  TUNNEL_STATS_PATH,
  type TunnelStats,
  toHex,
} from "../relay/protocol.ts";
import { signerFor } from "../relay/relay.ts";

/** What survives hibernation for each accepted agent socket. */
export interface AgentAttachment {
  connId: string;
  agentId: string;
  region: string;
  /** The cluster the agent's login token names (sandbox routing). */
  cluster: string;
  connectedAt: number;
  capacity: Capacity | null;
  heartbeatAt: number | null;
}

export interface AgentInfo extends AgentAttachment {
  inflight: number;
}

interface Pending {
  id: string;
  connId: string;
  ws: WebSocket;
  requestId: string;
  resolveHead: (res: Response) => void;
  headDone: boolean;
  body: BodyQueue | null;
  /** Reorders chunk frames; chunks (and the end) that beat the head wait in `early`. */
  seq: ChunkSequencer;
  early: Uint8Array[];
  earlyBytes: number;
  /** Bytes the client consumed that the agent has not been credited for yet. */
  uncredited: number;
  timer: ReturnType<typeof setTimeout> | null;
  idleMs: number;
  cancelKey: string | null;
  /** A streamed request body on its way to the agent (null when it went inline). */
  upload: Upload | null;
  /** A WebSocket session (an upgrade): its client socket once the agent accepted. */
  session: Session | null;
}

/**
 * The DO's side of one WebSocket session. Agent → client: messages put back in order and sent
 * to the client's socket at once, credited to the agent as they are handed over. Client → agent:
 * sent while the agent's credit lasts; beyond it they queue here, at most one window (reserved in
 * the DO's budget for the session's life) — a client that sends past that is closed with 1008.
 */
interface Session {
  client: WebSocket | null;
  fromAgent: ChunkSequencer<DataFrame>;
  /** Agent messages in order, waiting for the client's socket to open. */
  toClient: DataFrame[];
  /** The agent's ws-close, applied once every message before it was handed to the client. */
  agentClose: { code: number; reason: string } | null;
  uncredited: number;
  window: number;
  queue: Array<{ kind: DataKind; bytes: Uint8Array }>;
  queuedBytes: number;
  sent: number;
  /** The client's close, sent to the agent once the queue before it drained. */
  clientClose: { code: number; reason: string } | null;
}

/** The sending side of a streamed request body: the agent's credit window, and who waits on it. */
interface Upload {
  window: number;
  waiter: (() => void) | null;
}

const MIN_TIMEOUT_MS = 1000;
/** Clock skew allowed on an agent's login token; its jti is remembered this long past `exp`. */
const AGENT_CLOCK_TOLERANCE_SECONDS = 5;

/**
 * One per region. Agents dial in (`/v1/tunnel`) and stay connected through hibernation; each
 * relayed request becomes frames on one agent's socket, multiplexed by a tunnel id, with the
 * response streamed back chunk by chunk. A DO with requests in flight is not evicted, so the
 * pending map can live in memory; agent identity and capacity live in socket attachments.
 */
export class TunnelDO extends DurableObject<Env> {
  private readonly pending = new Map<string, Pending>();
  private readonly inflight = new Map<string, number>();
  /** Pending tunnel ids by cancel key (a caller may reuse its id for concurrent requests). */
  private readonly byCancelKey = new Map<string, Set<string>>();
  private rotation = 0;
  /** Credit windows reserved by the streamed uploads in flight (see TUNNEL_BUFFER_BUDGET_BYTES). */
  private reservedBytes = 0;
  /** Bodies of finished responses their clients have not read yet: they still count against the budget. */
  private readonly draining = new Set<BodyQueue>();
  private peakBufferedBytes = 0;

  override async fetch(request: Request): Promise<Response> {
    const upgrade = request.headers.get("Upgrade")?.toLowerCase() === "websocket";
    // An agent dials the tunnel path; a client's session is a relayed upgrade (the Worker marks it).
    if (upgrade && new URL(request.url).pathname === TUNNEL_PATH) return this.acceptAgent(request);
    const path = new URL(request.url).pathname;
    if (path === TUNNEL_AGENTS_PATH) return Response.json(this.agents());
    if (path === TUNNEL_CANCEL_PATH) return Response.json({ cancelled: this.cancel(request) });
    if (path === TUNNEL_STATS_PATH) {
      // Only where V8 was started with --expose-gc (the local stack's memory tests): what is left
      // after a full collection is what is held, not garbage not collected yet.
      const gc = (globalThis as { gc?: () => void }).gc;
      if (new URL(request.url).searchParams.has("gc") && typeof gc === "function") gc();
      return Response.json(this.stats());
    }
    return this.relay(request);
  }

  /** Connected agents with what they last reported; used for routing and by tests. */
  agents(): AgentInfo[] {
    const out: AgentInfo[] = [];
    for (const ws of this.ctx.getWebSockets()) {
      const a = attachmentOf(ws);
      if (a && ws.readyState === WebSocket.OPEN)
        out.push({ ...a, inflight: this.inflight.get(a.connId) ?? 0 });
    }
    return out;
  }

  /** What this DO holds for requests in flight (tests check it returns to zero). */
  stats(): TunnelStats {
    const bufferedBytes = this.bufferedBytes();
    return {
      pending: this.pending.size,
      inflightConnections: this.inflight.size,
      cancelKeys: this.byCancelKey.size,
      reservedBytes: this.reservedBytes,
      bufferedBytes,
      draining: this.draining.size,
      peakBufferedBytes: this.peakBufferedBytes,
    };
  }

  private async acceptAgent(request: Request): Promise<Response> {
    const requestId = request.headers.get("X-Request-Id") ?? crypto.randomUUID();
    const region = request.headers.get(TUNNEL_HEADERS.region) ?? "";
    const cfg = loadConfig(this.env);
    if (!cfg.ok) return errorResponse(new AppError("internal", cfg.message), requestId);
    const keys = cfg.config.agentPublicKeys[region];
    if (!keys) return errorResponse(new AppError("invalid_request", `unknown region "${region}"`), requestId);
    const auth = request.headers.get("Authorization") ?? "";
    const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1];
    const who = await verifyAgentToken(token, {
      publicKeys: keys,
      region,
      clockToleranceSeconds: AGENT_CLOCK_TOLERANCE_SECONDS,
    });
    if (!who.ok) return errorResponse(who.error, requestId);
    if (!this.firstUseOf(who.value.jti, (who.value.expiresAt + AGENT_CLOCK_TOLERANCE_SECONDS) * 1000)) {
      return errorResponse(
        new AppError("token_replayed", "agent token already used (jti replayed)"),
        requestId,
      );
    }

    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server, [who.value.agentId]);
    const attachment: AgentAttachment = {
      connId: crypto.randomUUID(),
      agentId: who.value.agentId,
      region,
      cluster: who.value.cluster,
      connectedAt: Date.now(),
      capacity: null,
      heartbeatAt: null,
    };
    server.serializeAttachment(attachment);
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * Whether an agent login's jti is new (and remember it until `forgetAtMs`). In the DO's SQLite,
   * not in memory: a hibernated or restarted DO must still refuse a login captured a minute ago.
   * No await between the check and the insert, so two concurrent logins cannot both pass.
   */
  private firstUseOf(jti: string, forgetAtMs: number): boolean {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS agent_login_jti (jti TEXT PRIMARY KEY, forget_at INTEGER NOT NULL)");
    sql.exec("DELETE FROM agent_login_jti WHERE forget_at < ?", Date.now());
    if (sql.exec("SELECT 1 FROM agent_login_jti WHERE jti = ?", jti).toArray().length > 0) return false;
    sql.exec("INSERT INTO agent_login_jti (jti, forget_at) VALUES (?, ?)", jti, forgetAtMs);
    return true;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (typeof message !== "string") return this.onData(ws, message);
    const decoded = decodeFrame(message);
    if (!decoded.ok) return;
    const frame = decoded.value;
    switch (frame.type) {
      case "heartbeat": {
        const a = attachmentOf(ws);
        if (a) ws.serializeAttachment({ ...a, capacity: frame.capacity, heartbeatAt: Date.now() });
        return;
      }
      // Replies count only from the socket the request was sent on: another agent of the region
      // that guesses (or sees) a tunnel id cannot answer, or break, someone else's request.
      case "response":
        if (!this.heldBy(ws, frame.id)) return;
        return this.onHead(frame.id, frame.status, pairsToHeaders(frame.headers), frame.body);
      case "ws-close":
        if (!this.heldBy(ws, frame.id)) return;
        return this.onAgentClose(frame.id, frame.code, frame.reason, frame.messages);
      case "end":
        if (!this.heldBy(ws, frame.id)) return;
        return this.onEnd(frame.id, frame.chunks);
      case "error":
        if (!this.heldBy(ws, frame.id)) return;
        return this.fail(frame.id, new AppError(frame.code, frame.message));
      case "credit": {
        // The agent consumed this much of a streamed upload or of a session's messages: as much
        // again may be sent.
        if (!this.heldBy(ws, frame.id)) return;
        const p = this.pending.get(frame.id);
        if (p?.session) {
          p.session.window += frame.bytes;
          this.flushToAgent(p);
          return;
        }
        const up = p?.upload;
        if (!up) return;
        up.window += frame.bytes;
        wakeUpload(up);
        return;
      }
      default:
        return; // request/cancel frames only travel edge → agent
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.dropSocket(ws, `agent tunnel closed (${code}${reason ? ` ${reason}` : ""})`);
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "closing");
    } catch {
      // already closed
    }
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    this.dropSocket(ws, `agent tunnel failed (${error instanceof Error ? error.message : "error"})`);
  }

  /** Whether request `id` is pending on this very socket (by object, or by connection id after a wake-up). */
  private heldBy(ws: WebSocket, id: string): boolean {
    const p = this.pending.get(id);
    if (!p) return false;
    return p.ws === ws || attachmentOf(ws)?.connId === p.connId;
  }

  /** Every request pending on this socket fails now, not at its timeout. */
  private dropSocket(ws: WebSocket, message: string): void {
    const a = attachmentOf(ws);
    for (const p of [...this.pending.values()]) {
      if (p.ws === ws || (a && p.connId === a.connId))
        this.fail(p.id, new AppError("tunnel_closed", message));
    }
    if (a) this.inflight.delete(a.connId);
  }

  /**
   * A caller asked to stop its request (POST /v1/requests/{id}/cancel). workerd notices a client
   * that left only when a write to it fails, which a request still waiting for its response head
   * never does; so a caller that gives up on a non-streamed request says so, and this is where it
   * lands: the agent gets the same cancel frame as for a streamed client that went away.
   */
  private cancel(request: Request): number {
    const key = request.headers.get(TUNNEL_HEADERS.cancelKey);
    const ids = key === null ? undefined : this.byCancelKey.get(key);
    if (!ids) return 0;
    let n = 0;
    for (const id of [...ids]) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.send(p.ws, { type: "cancel", id });
      this.fail(id, new AppError("request_cancelled", "cancelled by the caller"));
      n++;
    }
    return n;
  }

  // ---------- relaying ----------

  private pickAgent(cluster: string | null = null): { ws: WebSocket; a: AgentAttachment } | null {
    const open: Array<{ ws: WebSocket; a: AgentAttachment; tier: number; load: number }> = [];
    for (const ws of this.ctx.getWebSockets()) {
      const a = attachmentOf(ws);
      if (!a || ws.readyState !== WebSocket.OPEN) continue;
      if (cluster !== null && (a.cluster ?? DEFAULT_CLUSTER) !== cluster) continue;
      const load = this.inflight.get(a.connId) ?? 0;
      // Prefer agents whose last heartbeat shows free sandboxes beyond what we already sent them;
      // then agents that have not reported yet; agents known to be full queue the request.
      const tier = a.capacity === null ? 1 : a.capacity.ready - load > 0 ? 0 : 2;
      open.push({ ws, a, tier, load });
    }
    if (open.length === 0) return null;
    const rot = this.rotation++;
    open.sort((x, y) => x.tier - y.tier || x.load - y.load);
    const best = open.filter((o) => o.tier === open[0]!.tier && o.load === open[0]!.load);
    const chosen = best[rot % best.length]!;
    return { ws: chosen.ws, a: chosen.a };
  }

  private connection(connId: string): { ws: WebSocket; a: AgentAttachment } | null {
    for (const ws of this.ctx.getWebSockets()) {
      const a = attachmentOf(ws);
      if (a?.connId === connId && ws.readyState === WebSocket.OPEN) return { ws, a };
    }
    return null;
  }

  private async relay(request: Request): Promise<Response> {
    const requestId = request.headers.get("X-Request-Id") ?? crypto.randomUUID();
    const pin = request.headers.get(TUNNEL_HEADERS.pinConnection);
    const cluster = request.headers.get(TUNNEL_HEADERS.cluster);
    const cancelBy = request.headers.get(TUNNEL_HEADERS.cancelKey);
    const picked = pin === null ? this.pickAgent(cluster) : this.connection(pin);
    if (!picked && cluster !== null) {
      // Only that cluster holds the sandbox: no failover to another cluster or region.
      return errorResponse(
        new AppError("sandbox_cluster_unavailable", `no agent of cluster ${cluster} is connected`, {
          retryAfterSeconds: 5,
        }),
        requestId,
      );
    }
    if (!picked) {
      return errorResponse(
        new AppError("no_agent", "no agent connected for this region", { retryAfterSeconds: 5 }),
        requestId,
        {
          [TUNNEL_HEADERS.noAgent]: "1",
        },
      );
    }
    const timeoutMs = Math.max(
      MIN_TIMEOUT_MS,
      Number(request.headers.get(TUNNEL_HEADERS.timeoutMs)) || 60_000,
    );
    const idleMs = Math.max(0, Number(request.headers.get(TUNNEL_HEADERS.idleMs) ?? timeoutMs) || 0);
    const headers = new Headers(request.headers);
    for (const h of Object.values(TUNNEL_HEADERS)) headers.delete(h);
    const url = new URL(request.url);
    const streamed = request.headers.get(TUNNEL_HEADERS.bodyTrailer) === "1" && request.body !== null;
    const websocket = request.headers.get(TUNNEL_HEADERS.websocket) === "1";
    // What this request reserves of the DO's budget for its whole life (see TUNNEL_BUFFER_BUDGET_BYTES).
    const reserve = streamed ? TUNNEL_INITIAL_WINDOW_BYTES : websocket ? TUNNEL_WS_WINDOW_BYTES : 0;
    if (reserve > 0 && this.bufferedBytes() + reserve > TUNNEL_BUFFER_BUDGET_BYTES) {
      await request.body?.cancel().catch(() => {});
      return errorResponse(
        new AppError("tunnel_busy", "the region's tunnel is at its buffered-bytes budget; retry", {
          retryAfterSeconds: 1,
        }),
        requestId,
      );
    }
    const body =
      request.body && !streamed && !websocket
        ? new Uint8Array(await request.arrayBuffer())
        : new Uint8Array(0);
    const id = crypto.randomUUID();
    const { ws, a } = picked;

    const head = new Promise<Response>((resolveHead) => {
      const p: Pending = {
        id,
        connId: a.connId,
        ws,
        requestId,
        resolveHead,
        headDone: false,
        body: null,
        seq: new ChunkSequencer(),
        early: [],
        earlyBytes: 0,
        uncredited: 0,
        timer: null,
        idleMs,
        cancelKey: cancelBy,
        upload: streamed ? { window: TUNNEL_INITIAL_WINDOW_BYTES, waiter: null } : null,
        session: websocket ? newSession() : null,
      };
      this.reservedBytes += reserve;
      this.pending.set(id, p);
      if (cancelBy !== null) {
        const ids = this.byCancelKey.get(cancelBy) ?? new Set<string>();
        ids.add(id);
        this.byCancelKey.set(cancelBy, ids);
      }
      this.inflight.set(a.connId, (this.inflight.get(a.connId) ?? 0) + 1);
      this.armHead(p, timeoutMs);
    });

    // The caller went away (needs the enable_request_signal flag; the relay passes the client's
    // signal in), before the answer or while it streams: stop the agent either way. Current workerd
    // does not cancel a Worker's subrequests when its client leaves, so the body reader's cancel
    // alone no longer covers the streamed case.
    request.signal?.addEventListener("abort", () => {
      const p = this.pending.get(id);
      // An open session outlives the Worker request that opened it: only its sockets end it.
      if (!p || (p.session && p.headDone)) return;
      this.send(p.ws, { type: "cancel", id });
      if (!p.headDone) {
        this.fail(id, new AppError("request_cancelled", "the client went away"));
        return;
      }
      // Mid-stream there is nobody left to tell: end the body rather than error it, which the
      // runtime would only report as an uncaught rejection of a stream no one reads.
      this.finish(id);
      p.body?.end();
    });
    try {
      const inline = !streamed && body.length <= TUNNEL_INLINE_BODY_BYTES;
      const frame: TunnelFrame = {
        type: "request",
        id,
        method: request.method,
        path: `${url.pathname}${url.search}`,
        headers: headersToPairs(headers),
        ...(inline ? (body.length > 0 ? { body: toBase64(body) } : {}) : { bodyFollows: true }),
        ...(streamed ? { bodyInTrailer: true } : {}),
        ...(websocket ? { websocket: true } : {}),
      };
      ws.send(encodeFrame(frame));
      if (streamed) {
        const region = request.headers.get(TUNNEL_HEADERS.region) ?? "";
        void this.pumpUpload(id, request.body as ReadableStream<Uint8Array>, {
          region,
          headToken: headers.get(RELAY_HEADER),
          endMark: request.headers.get(TUNNEL_HEADERS.bodyEndMark) ?? "",
          timeoutMs,
        });
      } else if (!inline) {
        let seq = 0;
        for (const part of chunkBytes(body)) ws.send(encodeDataFrame(DATA_KIND.chunk, id, seq++, part));
        ws.send(encodeFrame({ type: "end", id, chunks: seq }));
      }
    } catch (e) {
      this.fail(
        id,
        new AppError("tunnel_closed", `could not send to agent: ${e instanceof Error ? e.message : e}`),
      );
    }
    const res = await head;
    res.headers.set(TUNNEL_HEADERS.agent, a.agentId);
    return res;
  }

  /**
   * Send a streamed request body as it arrives from the Worker, never more than the agent's credit
   * window ahead of what it consumed (so the DO holds about one chunk of it), hashing as it goes;
   * the end frame carries the trailer that binds the hash and length to the head's relay token.
   */
  private async pumpUpload(
    id: string,
    body: ReadableStream<Uint8Array>,
    opts: { region: string; headToken: string | null; endMark: string; timeoutMs: number },
  ): Promise<void> {
    const { region, headToken } = opts;
    // Reads of a whole chunk (the stream from the Worker arrives in 4 KiB pieces otherwise).
    const reader = body.getReader({ mode: "byob" });
    const digest = new crypto.DigestStream("SHA-256");
    const hashing = digest.getWriter();
    const live = (): Pending | null => {
      const p = this.pending.get(id);
      return p?.upload ? p : null;
    };
    let seq = 0;
    let size = 0;
    const queued = new ByteQueue();
    /** Send whole chunks of what is queued, keeping the last `keep` bytes back. */
    const sendQueued = async (keep: number, all: boolean): Promise<boolean> => {
      while (queued.size - keep >= TUNNEL_CHUNK_BYTES || (all && queued.size > keep)) {
        const n = Math.min(TUNNEL_CHUNK_BYTES, queued.size - keep);
        let p = live();
        while (p?.upload && p.upload.window < n) {
          const up = p.upload;
          await new Promise<void>((resolve) => {
            up.waiter = resolve;
          });
          p = live();
        }
        if (!p?.upload) return false;
        const parts = queued.take(n);
        p.upload.window -= n;
        size += n;
        p.ws.send(encodeDataFrame(DATA_KIND.chunk, id, seq++, parts));
        for (const part of parts) await hashing.write(part);
      }
      return true;
    };
    try {
      for (;;) {
        const { done, value } = await reader.readAtLeast(
          TUNNEL_CHUNK_BYTES,
          new Uint8Array(TUNNEL_CHUNK_BYTES),
        );
        if (done) break;
        queued.push(value);
        // A slow client's upload is alive as long as bytes come: the head's wait restarts.
        const p = live();
        if (p && !p.headDone) this.armHead(p, opts.timeoutMs);
        // The last BODY_END_MARK_BYTES seen are held back: at the end they must be the mark.
        if (!(await sendQueued(BODY_END_MARK_BYTES, false))) {
          await reader.cancel().catch(() => {});
          return;
        }
      }
      if (!(await sendQueued(BODY_END_MARK_BYTES, true))) return;
      const tail = concatParts(queued.take(BODY_END_MARK_BYTES));
      if (toHex(tail) !== opts.endMark || opts.endMark.length !== BODY_END_MARK_BYTES * 2)
        throw new AppError("request_cancelled", "the upload ended before its end");
      await hashing.close();
      const sha = digestToBase64url(await digest.digest);
      const cfg = loadConfig(this.env);
      if (!cfg.ok) throw new AppError("internal", cfg.message);
      const headJti = headToken ? decodeJwt(headToken).jti : undefined;
      if (!headJti) throw new AppError("internal", "streamed relay has no head token");
      const trailer = await (await signerFor(cfg.config, region)).signTrailer({
        headJti,
        bodySha256: sha,
        size,
      });
      const p = live();
      if (!p) return;
      p.ws.send(encodeFrame({ type: "end", id, chunks: seq, trailer }));
      this.releaseUpload(p);
    } catch (e) {
      // The client's upload broke off or ran past the limit: the agent is told to stop and drops
      // what it wrote (no trailer, nothing committed).
      const p = this.pending.get(id);
      if (!p) return;
      this.send(p.ws, { type: "cancel", id });
      this.fail(
        id,
        e instanceof AppError ? e : new AppError("request_cancelled", "the upload ended before its end"),
      );
    }
  }

  /** An upload's window leaves the budget once its end was sent, or its request ended first. */
  private releaseUpload(p: Pending): void {
    if (!p.upload) return;
    this.reservedBytes -= TUNNEL_INITIAL_WINDOW_BYTES;
    wakeUpload(p.upload);
    p.upload = null;
  }

  /**
   * Room for `bytes` more of `incoming`'s response, made before they are queued so the DO never
   * holds more than its budget, not even one chunk more: while they would cross it, the response
   * holding the most queued bytes (counting `incoming` with them) is cut — its client gets a broken
   * body, its agent a cancel. Its client is the one not reading (a reader keeps its queue near
   * empty), so the DO's memory goes to whoever takes it, while every other request of the region
   * goes on. Withholding credit instead would not help: a response never has more than its credit
   * window queued anyway; too many windows at once is the problem, and only ending one frees one.
   * False when `incoming` itself was cut (its bytes are then dropped).
   */
  private makeRoom(incoming: Pending, bytes: number): boolean {
    let total = this.bufferedBytes();
    for (; total + bytes > TUNNEL_BUFFER_BUDGET_BYTES; total = this.bufferedBytes()) {
      let victim: { body: BodyQueue | null; held: number; p: Pending | null } = {
        body: incoming.body,
        held: heldBytes(incoming) + bytes,
        p: incoming,
      };
      for (const p of this.pending.values()) {
        const held = heldBytes(p);
        if (p !== incoming && held > victim.held) victim = { body: p.body, held, p };
      }
      for (const body of this.draining) {
        if (body.bufferedBytes > victim.held) victim = { body, held: body.bufferedBytes, p: null };
      }
      const cut = new AppError(
        "tunnel_busy",
        "the region's tunnel is over its buffered-bytes budget; response cut",
        { retryAfterSeconds: 1 },
      );
      if (victim.body) {
        victim.body.cut(cut);
        this.draining.delete(victim.body);
      }
      if (victim.p) {
        victim.p.early = [];
        victim.p.earlyBytes = 0;
        this.send(victim.p.ws, { type: "cancel", id: victim.p.id });
        this.fail(victim.p.id, cut);
        if (victim.p === incoming) return false;
      }
    }
    this.peakBufferedBytes = Math.max(this.peakBufferedBytes, total + bytes);
    return true;
  }

  /** Body bytes this DO holds or has promised room for: reserved upload windows, queued response bytes. */
  private bufferedBytes(): number {
    let n = this.reservedBytes;
    for (const p of this.pending.values()) n += heldBytes(p);
    for (const b of this.draining) {
      if (b.bufferedBytes === 0) this.draining.delete(b);
      else n += b.bufferedBytes;
    }
    if (n > this.peakBufferedBytes) this.peakBufferedBytes = n;
    return n;
  }

  private onHead(id: string, status: number, headers: Headers, inline?: string): void {
    const p = this.pending.get(id);
    if (!p || p.headDone) return;
    if (status === 101 && !p.session) {
      this.fail(id, new AppError("agent_unavailable", "agent answered 101 to a plain request"));
      return;
    }
    p.headDone = true;
    if (p.session && status === 101) {
      this.openSession(p, headers);
      return;
    }
    if (inline !== undefined) {
      // Complete in this frame: nothing follows, nothing to stream or credit.
      this.finish(id);
      p.resolveHead(
        new Response(status === 204 || status === 304 ? null : fromBase64(inline), { status, headers }),
      );
      return;
    }
    const noBody = status === 204 || status === 304;
    // Cancelled by the reader = the client went away: tell the agent to stop, forget the request.
    p.body = new BodyQueue(
      () => {
        if (this.pending.get(id) !== p) return;
        this.send(p.ws, { type: "cancel", id });
        this.finish(id);
      },
      (bytes) => {
        p.uncredited += bytes;
        if (p.uncredited >= TUNNEL_CREDIT_BATCH_BYTES && this.pending.get(id) === p) {
          this.send(p.ws, { type: "credit", id, bytes: p.uncredited });
          p.uncredited = 0;
        }
      },
    );
    this.armIdle(p);
    p.resolveHead(new Response(noBody ? null : p.body.stream, { status, headers }));
    for (const b of p.early.splice(0)) p.body.push(b);
    p.earlyBytes = 0;
    if (noBody || p.seq.complete) this.complete(p);
  }

  /** A binary data frame from an agent: a response body's chunk or a session's message. */
  private onData(ws: WebSocket, message: ArrayBuffer): void {
    const decoded = decodeDataFrame(message);
    if (!decoded.ok) return;
    const d = decoded.value;
    if (!this.heldBy(ws, d.id)) return;
    if (d.kind === DATA_KIND.chunk) {
      this.onChunk(d.id, d.seq, d.bytes);
      return;
    }
    const p = this.pending.get(d.id);
    const s = p?.session;
    if (!p || !s) return;
    const ready = s.fromAgent.push(d.seq, d);
    if (!ready.ok) {
      this.endSession(p, { code: 1002, reason: "bad message order" }, true);
      return;
    }
    s.toClient.push(...ready.value);
    this.flushToClient(p);
  }

  // ---------- WebSocket sessions ----------

  /** The agent accepted the upgrade: the client's socket opens, messages flow both ways. */
  private openSession(p: Pending, headers: Headers): void {
    const s = p.session as Session;
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // Binary messages as ArrayBuffers, in order (the standard default, Blob, reads asynchronously).
    server.binaryType = "arraybuffer";
    server.accept();
    s.client = server;
    server.addEventListener("message", (ev) => this.fromClient(p, ev.data));
    server.addEventListener("close", (ev) => this.onClientClose(p, ev.code, ev.reason));
    server.addEventListener("error", () => this.onClientClose(p, 1006, "client socket error"));
    p.resolveHead(new Response(null, { status: 101, webSocket: client, headers }));
    this.flushToClient(p);
  }

  /** Agent messages now in order go to the client; each is credited back as it is handed over. */
  private flushToClient(p: Pending): void {
    const s = p.session;
    if (!s?.client || this.pending.get(p.id) !== p) return;
    for (let m = s.toClient.shift(); m !== undefined; m = s.toClient.shift()) {
      try {
        s.client.send(dataToWsMessage(m));
      } catch {
        this.endSession(p, { code: 1001, reason: "client gone" }, true);
        return;
      }
      s.uncredited += wsMessageCost(m.bytes.byteLength);
    }
    if (s.uncredited >= TUNNEL_WS_CREDIT_BATCH_BYTES) {
      this.send(p.ws, { type: "credit", id: p.id, bytes: s.uncredited });
      s.uncredited = 0;
    }
    if (s.agentClose && s.fromAgent.complete) this.endSession(p, s.agentClose, false);
  }

  /** A client message: to the agent while its credit lasts, queued up to one window, else 1008. */
  private fromClient(p: Pending, data: string | ArrayBuffer): void {
    const s = p.session;
    if (!s || s.clientClose || this.pending.get(p.id) !== p) return;
    const m = wsMessageToData(typeof data === "string" ? data : new Uint8Array(data));
    if (m.bytes.byteLength > TUNNEL_WS_MAX_MESSAGE_BYTES) {
      this.endSession(p, { code: 1009, reason: "message too big" }, true);
      return;
    }
    s.queue.push(m);
    s.queuedBytes += wsMessageCost(m.bytes.byteLength);
    if (s.queuedBytes > TUNNEL_WS_WINDOW_BYTES) {
      this.endSession(p, { code: 1008, reason: "sending faster than the session reads" }, true);
      return;
    }
    this.flushToAgent(p);
  }

  private flushToAgent(p: Pending): void {
    const s = p.session;
    if (!s || this.pending.get(p.id) !== p) return;
    for (let m = s.queue[0]; m !== undefined; m = s.queue[0]) {
      const cost = wsMessageCost(m.bytes.byteLength);
      if (s.window < cost) return;
      s.queue.shift();
      s.window -= cost;
      s.queuedBytes -= cost;
      try {
        p.ws.send(encodeDataFrame(m.kind, p.id, s.sent++, m.bytes));
      } catch {
        this.fail(p.id, new AppError("tunnel_closed", "agent socket gone"));
        return;
      }
    }
    // The client closed after these messages: now the agent hears it.
    if (s.clientClose) {
      this.send(p.ws, { type: "ws-close", id: p.id, ...s.clientClose, messages: s.sent });
      this.finish(p.id);
    }
  }

  private onClientClose(p: Pending, code: number, reason: string): void {
    const s = p.session;
    if (!s || s.clientClose || this.pending.get(p.id) !== p) return;
    s.clientClose = { code: sendableCode(code), reason: reason.slice(0, 123) };
    // Complete the client's closing handshake now; what it sent before still goes to the agent.
    if (s.client) closeQuietly(s.client, s.clientClose);
    this.flushToAgent(p);
  }

  private onAgentClose(id: string, code: number, reason: string, messages: number): void {
    const p = this.pending.get(id);
    const s = p?.session;
    if (!p || !s) return;
    if (!s.fromAgent.end(messages).ok) {
      this.endSession(p, { code: 1002, reason: "bad close" }, false);
      return;
    }
    s.agentClose = { code, reason };
    this.flushToClient(p);
  }

  /** End a session now: the client's socket closes with `close`; the agent hears it if `tellAgent`. */
  private endSession(p: Pending, close: { code: number; reason: string }, tellAgent: boolean): void {
    if (this.pending.get(p.id) !== p) return;
    const s = p.session;
    if (tellAgent) this.send(p.ws, { type: "ws-close", id: p.id, ...close, messages: s?.sent ?? 0 });
    if (s?.client) closeQuietly(s.client, close);
    this.finish(p.id);
  }

  private onChunk(id: string, seq: number, bytes: Uint8Array): void {
    const p = this.pending.get(id);
    if (!p) return;
    const ready = p.seq.push(seq, bytes);
    if (!ready.ok) {
      this.fail(id, new AppError("agent_unavailable", ready.error.message));
      return;
    }
    const n = ready.value.reduce((t, b) => t + b.byteLength, 0);
    if (!this.makeRoom(p, n)) return;
    for (const b of ready.value) {
      if (p.body) p.body.push(b);
      else p.early.push(b);
    }
    if (!p.body) p.earlyBytes += n;
    if (p.headDone) this.armIdle(p);
    if (p.body && p.seq.complete) this.complete(p);
  }

  private onEnd(id: string, chunks: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    const ended = p.seq.end(chunks);
    if (!ended.ok) {
      this.fail(id, new AppError("agent_unavailable", ended.error.message));
      return;
    }
    if (p.body && p.seq.complete) this.complete(p);
  }

  private complete(p: Pending): void {
    this.finish(p.id);
    p.body?.end();
    if (p.body && p.body.bufferedBytes > 0) this.draining.add(p.body);
  }

  /** Fail one request: an error envelope if nothing was sent yet, else a broken body stream. */
  private fail(id: string, error: AppError): void {
    const p = this.pending.get(id);
    if (!p) return;
    if (!p.headDone) {
      p.headDone = true;
      p.resolveHead(errorResponse(error, p.requestId));
      if (error.code === "relay_timeout") this.send(p.ws, { type: "cancel", id });
    } else if (p.session) {
      // An open session: its client hears the failure as a close (the agent is gone or cancelled).
      if (p.session.client) closeQuietly(p.session.client, { code: 1011, reason: error.code });
      this.finish(id);
      return;
    } else {
      this.finish(id);
      p.body?.fail(error);
      return;
    }
    this.finish(id);
  }

  /**
   * The wait for the answer's head. A streamed upload re-arms it with each chunk it sends: the
   * agent answers only after the whole body, which a slow client may take longer than this to send.
   */
  private armHead(p: Pending, timeoutMs: number): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = setTimeout(
      () => this.fail(p.id, new AppError("relay_timeout", `agent did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  }

  private armIdle(p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    if (p.idleMs > 0) {
      p.timer = setTimeout(() => {
        this.send(p.ws, { type: "cancel", id: p.id });
        this.fail(p.id, new AppError("relay_timeout", `no data from agent for ${p.idleMs} ms`));
      }, p.idleMs);
    }
  }

  private finish(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    this.pending.delete(id);
    // The agent answered (or the request failed): the pump stops at its next chunk.
    this.releaseUpload(p);
    if (p.session) this.reservedBytes -= TUNNEL_WS_WINDOW_BYTES;
    if (p.cancelKey !== null) {
      const ids = this.byCancelKey.get(p.cancelKey);
      ids?.delete(id);
      if (ids?.size === 0) this.byCancelKey.delete(p.cancelKey);
    }
    const n = (this.inflight.get(p.connId) ?? 1) - 1;
    if (n > 0) this.inflight.set(p.connId, n);
    else this.inflight.delete(p.connId);
  }

  private send(ws: WebSocket, frame: TunnelFrame): void {
    try {
      ws.send(encodeFrame(frame));
    } catch {
      // socket gone; its close handler fails what is pending
    }
  }
}

/** Response bytes a pending request holds: queued for its client, or arrived before its head. */
function heldBytes(p: Pending): number {
  return (p.body?.bufferedBytes ?? 0) + p.earlyBytes;
}

function concatParts(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((t, b) => t + b.byteLength, 0));
  let at = 0;
  for (const b of parts) {
    out.set(b, at);
    at += b.byteLength;
  }
  return out;
}

function newSession(): Session {
  return {
    client: null,
    fromAgent: new ChunkSequencer<DataFrame>(),
    toClient: [],
    agentClose: null,
    uncredited: 0,
    window: TUNNEL_WS_WINDOW_BYTES,
    queue: [],
    queuedBytes: 0,
    sent: 0,
    clientClose: null,
  };
}

/** 1005/1006/1015 say what happened but may not be sent in a close frame. */
function sendableCode(code: number): number {
  if (code === 1005) return 1000;
  if (code === 1006 || code === 1015) return 1001;
  return code >= 1000 && code <= 4999 ? code : 1000;
}

function closeQuietly(ws: WebSocket, close: { code: number; reason: string }): void {
  try {
    ws.close(sendableCode(close.code), close.reason);
  } catch {
    try {
      ws.close(1011, close.reason);
    } catch {
      // already closed
    }
  }
}

function wakeUpload(up: Upload): void {
  const w = up.waiter;
  up.waiter = null;
  w?.();
}

function attachmentOf(ws: WebSocket): AgentAttachment | null {
  try {
    return (ws.deserializeAttachment() as AgentAttachment | null) ?? null;
  } catch {
    return null;
  }
}
