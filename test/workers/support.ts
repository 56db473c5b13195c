import { SELF } from "cloudflare:test";
import { importJWK, type JWTPayload, SignJWT } from "jose";
import { expect } from "vitest";
import { TUNNEL_AGENTS_PATH, TUNNEL_ORIGIN } from "../../edge/relay/protocol.ts";
import { type ErrorBody, ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { createRelayVerifier, type RelayVerifier, relayAudience } from "../../shared/relay-signing.ts";
import {
  ChunkSequencer,
  chunkBytes,
  DATA_KIND,
  type DataFrame,
  dataToWsMessage,
  decodeDataFrame,
  decodeFrame,
  encodeDataFrame,
  encodeFrame,
  fromBase64,
  type HeartbeatFrame,
  headersToPairs,
  pairsToHeaders,
  type RequestFrame,
  signAgentToken,
  TUNNEL_MAX_FRAME_BYTES,
  wsMessageCost,
  wsMessageToData,
} from "../../shared/tunnel.ts";
import { waitFor } from "../support/wait-for.ts";
import {
  AGENT_PRIVATE_JWKS,
  RELAY_PUBLIC_JWKS,
  TENANT_ISSUER_PRIVATE_JWK,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "./fixtures/test-keys.ts";

export const BASE = "https://edge.test";

/** A tenant token from the test issuer; `claims` override the defaults. */
export async function tenantToken(
  claims: JWTPayload & Record<string, unknown> = {},
  opts: { expiresIn?: number; kid?: string } = {},
): Promise<string> {
  const key = await importJWK(TENANT_ISSUER_PRIVATE_JWK, "RS256");
  const now = Math.floor(Date.now() / 1000);
  // Registered claims are plain payload fields here so a test can override (or drop) any of them.
  const payload: Record<string, unknown> = {
    iss: TEST_ISSUER,
    aud: TEST_AUDIENCE,
    sub: "user-1",
    iat: now,
    exp: now + (opts.expiresIn ?? 300),
    tenant: "tenant-a",
    scope: "sandbox:exec sandbox:chat sandbox:admin",
    ...claims,
  };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "RS256", kid: opts.kid ?? TENANT_ISSUER_PRIVATE_JWK.kid! })
    .sign(key);
}

export const auth = (token: string, extra: Record<string, string> = {}) => ({
  Authorization: `Bearer ${token}`,
  ...extra,
});

/** Asserts the envelope, status and code; returns the error body for checks of its message and details. */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  const body = ErrorEnvelopeSchema.parse(JSON.parse(text));
  expect(body.error.code).toBe(code);
  expect(body.error.requestId).toBe(res.headers.get("X-Request-Id"));
  return body.error;
}

/** A relayed request as the test agent receives it, already verified against the relay key. */
export interface AgentRequest {
  frame: RequestFrame;
  request: Request;
  body: Uint8Array;
  /** A streamed body's signed trailer (from its end frame). */
  trailer?: string;
}

export type AgentHandler = (req: AgentRequest, agent: TestAgent) => Promise<void> | void;

/** An agent played by the test: a WebSocket to /v1/tunnel speaking the frame protocol. */
export class TestAgent {
  readonly received: AgentRequest[] = [];
  readonly cancelled: string[] = [];
  /** Response ids the edge sent a credit frame for (its client consumed a batch of the body). */
  readonly credited: string[] = [];
  readonly verifier: RelayVerifier;
  maxFrameBytes = 0;
  /**
   * Credit each request-body chunk back as it arrives, as a reading agent does; false plays an
   * agent that stops reading (the edge must then stop at the window).
   */
  creditUploads = true;
  /** Request-body bytes received, all requests together (flow-control checks). */
  uploadBytes = 0;
  /** Request-body bytes credited back, and the most ever received beyond them (at any chunk). */
  uploadCredited = 0;
  maxUncredited = 0;
  /** Credit each session message back as it arrives; false plays a session that stops reading. */
  creditSessions = true;
  /** WebSocket sessions this agent accepted: the client's messages in order, and how they ended. */
  readonly sessions = new Map<
    string,
    {
      seq: ChunkSequencer<DataFrame>;
      messages: Array<Uint8Array | string>;
      sent: number;
      bytes: number;
      closed: { code: number; reason: string; messages: number } | null;
    }
  >();
  private readonly bodies = new Map<
    string,
    { frame: RequestFrame; parts: Uint8Array[]; seq: ChunkSequencer; trailer?: string }
  >();

  constructor(
    readonly ws: WebSocket,
    readonly region: string,
    readonly agentId: string,
    private readonly handler: AgentHandler,
  ) {
    this.verifier = createRelayVerifier({
      publicKeys: RELAY_PUBLIC_JWKS[region]!,
      audience: relayAudience(region),
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return this.onData(new Uint8Array(ev.data as ArrayBuffer));
      const text = ev.data;
      this.maxFrameBytes = Math.max(this.maxFrameBytes, text.length);
      const f = decodeFrame(text);
      if (!f.ok) throw new Error(`bad frame from edge: ${text.slice(0, 200)}`);
      const frame = f.value;
      if (frame.type === "request") {
        if (frame.bodyFollows) this.bodies.set(frame.id, { frame, parts: [], seq: new ChunkSequencer() });
        else void this.dispatch(frame, frame.body ? fromBase64(frame.body) : new Uint8Array(0));
      } else if (frame.type === "end") {
        const b = this.bodies.get(frame.id);
        if (!b) return;
        const r = b.seq.end(frame.chunks);
        if (!r.ok) throw new Error(r.error.message);
        if (frame.trailer) b.trailer = frame.trailer;
        this.bodyProgress(frame.id, b);
      } else if (frame.type === "ws-close") {
        const s = this.sessions.get(frame.id);
        if (s) s.closed = { code: frame.code, reason: frame.reason, messages: frame.messages };
      } else if (frame.type === "cancel") {
        this.cancelled.push(frame.id);
      } else if (frame.type === "credit") {
        this.credited.push(frame.id);
      }
    });
  }

  private onData(raw: Uint8Array): void {
    this.maxFrameBytes = Math.max(this.maxFrameBytes, raw.byteLength);
    const d = decodeDataFrame(raw);
    if (!d.ok) throw new Error(`bad data frame from edge: ${d.error.message}`);
    const { id, seq, bytes, kind } = d.value;
    if (kind !== DATA_KIND.chunk) {
      const s = this.sessions.get(id);
      if (!s) return;
      const r = s.seq.push(seq, d.value);
      if (!r.ok) throw new Error(r.error.message);
      for (const m of r.value) {
        s.messages.push(dataToWsMessage(m));
        s.bytes += m.bytes.byteLength;
        if (this.creditSessions) this.send({ type: "credit", id, bytes: wsMessageCost(m.bytes.byteLength) });
      }
      return;
    }
    const b = this.bodies.get(id);
    if (!b) return;
    const r = b.seq.push(seq, bytes.slice());
    if (!r.ok) throw new Error(r.error.message);
    b.parts.push(...r.value);
    this.uploadBytes += bytes.byteLength;
    this.maxUncredited = Math.max(this.maxUncredited, this.uploadBytes - this.uploadCredited);
    if (this.creditUploads) this.creditUpload(id, bytes.byteLength);
    this.bodyProgress(id, b);
  }

  private bodyProgress(
    id: string,
    b: { frame: RequestFrame; parts: Uint8Array[]; seq: ChunkSequencer; trailer?: string },
  ): void {
    if (!b.seq.complete) return;
    this.bodies.delete(id);
    void this.dispatch(b.frame, concat(b.parts), b.trailer);
  }

  /** One body chunk of response `id` (a binary data frame). */
  sendChunk(id: string, seq: number, bytes: Uint8Array): void {
    this.ws.send(encodeDataFrame(DATA_KIND.chunk, id, seq, bytes));
  }

  /** Accept an upgrade (`frame.websocket`): answer 101; the session's messages collect in `sessions`. */
  acceptSession(id: string, headers: Array<[string, string]> = []): void {
    this.sessions.set(id, { seq: new ChunkSequencer(), messages: [], sent: 0, bytes: 0, closed: null });
    this.send({ type: "response", id, status: 101, headers });
  }

  /** Send the client a message of session `id` (seq in order unless told). */
  sendWs(id: string, msg: Uint8Array | string, seq?: number): void {
    const s = this.sessions.get(id)!;
    const { kind, bytes } = wsMessageToData(msg);
    const n = seq ?? s.sent;
    s.sent = Math.max(s.sent, n + 1);
    this.ws.send(encodeDataFrame(kind, id, n, bytes));
  }

  /** End session `id` from the agent's side (its ws-close counts the messages sent). */
  closeWs(id: string, code = 1000, reason = ""): void {
    const s = this.sessions.get(id)!;
    this.send({ type: "ws-close", id, code, reason, messages: s.sent });
  }

  private async dispatch(frame: RequestFrame, body: Uint8Array, trailer?: string): Promise<void> {
    const hasBody = frame.method !== "GET" && frame.method !== "HEAD";
    const request = new Request(`http://agent.local${frame.path}`, {
      method: frame.method,
      headers: pairsToHeaders(frame.headers),
      body: hasBody ? (body as Uint8Array<ArrayBuffer>) : null,
    });
    const r: AgentRequest = { frame, request, body, ...(trailer !== undefined ? { trailer } : {}) };
    this.received.push(r);
    try {
      await this.handler(r, this);
    } catch (e) {
      this.send({ type: "error", id: frame.id, code: "internal", message: String(e) });
    }
  }

  /** Ids of the requests whose body is still arriving. */
  uploading(): string[] {
    return [...this.bodies.keys()];
  }

  creditUpload(id: string, bytes: number): void {
    this.uploadCredited += bytes;
    this.send({ type: "credit", id, bytes });
  }

  send(frame: Parameters<typeof encodeFrame>[0]): void {
    this.ws.send(encodeFrame(frame));
  }

  /** Answer `id` with a whole Response, body in chunk frames. */
  async respond(id: string, res: Response): Promise<void> {
    const chunks = await this.respondUnfinished(id, res);
    this.send({ type: "end", id, chunks });
  }

  /** `res`'s head and body, but no end: the answer stays open (an agent still working). Returns the chunk count. */
  async respondUnfinished(id: string, res: Response): Promise<number> {
    this.send({ type: "response", id, status: res.status, headers: headersToPairs(res.headers) });
    const body = new Uint8Array(await res.arrayBuffer());
    let seq = 0;
    for (const part of chunkBytes(body)) this.sendChunk(id, seq++, part);
    return seq;
  }

  heartbeat(capacity: HeartbeatFrame["capacity"]): void {
    this.send({ type: "heartbeat", agentId: this.agentId, region: this.region, capacity });
  }

  close(code = 1000): void {
    this.ws.close(code, "test done");
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Dial the tunnel as an agent of `region` and serve relayed requests with `handler`. */
export async function connectAgent(
  region: string,
  handler: AgentHandler,
  agentId = `agent-${region}`,
  cluster?: string,
) {
  const token = await signAgentToken({
    privateJwk: AGENT_PRIVATE_JWKS[region]!,
    agentId,
    region,
    ...(cluster !== undefined ? { cluster } : {}),
  });
  const res = await SELF.fetch(`${BASE}/v1/tunnel?region=${region}`, {
    headers: { Upgrade: "websocket", Authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  // Data frames are binary: read them as ArrayBuffers (the standard default is Blob).
  ws.binaryType = "arraybuffer";
  ws.accept();
  return new TestAgent(ws, region, agentId, handler);
}

/** Poll the region's TunnelDO until `n` agents are connected (accept is asynchronous). */
export async function waitForAgents(
  ns: DurableObjectNamespace,
  region: string,
  n: number,
  timeoutMs = 5000,
): Promise<void> {
  const stub = ns.get(ns.idFromName(region));
  const count = async () =>
    ((await (await stub.fetch(`${TUNNEL_ORIGIN}${TUNNEL_AGENTS_PATH}`)).json()) as unknown[]).length;
  await waitFor(`${n} agents in ${region}`, async () => (await count()) === n, timeoutMs, 20);
}

export { TUNNEL_MAX_FRAME_BYTES };

/** Close every agent in `list` (emptying it) and wait until `regions` show none connected. */
export async function closeAgents(
  list: TestAgent[],
  ns: DurableObjectNamespace,
  regions: string[],
): Promise<void> {
  for (const a of list.splice(0)) {
    try {
      a.close();
    } catch {
      // already closed
    }
  }
  for (const r of regions) await waitForAgents(ns, r, 0);
}
