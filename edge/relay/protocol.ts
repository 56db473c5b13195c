/**
 * The Worker ↔ TunnelDO protocol: the internal headers, paths and cancel key the routes, the
 * relay and the Durable Object agree on. Kept apart from `durable/tunnel.ts` so that a route or
 * the relay builder never imports the Durable Object class (and `cloudflare:workers`) to name a
 * header. The agent-facing wire (frames, limits) is `shared/tunnel.ts`.
 */

/** The origin of every Worker → TunnelDO request; the DO never sees a public URL. */
export const TUNNEL_ORIGIN = "https://tunnel.internal";

/**
 * Internal headers between the Worker and the DO. The DO is reachable only through the Worker,
 * which sets them; they are stripped before anything reaches an agent or a client.
 */
export const TUNNEL_HEADERS = {
  region: "X-Tunnel-Region",
  /** Milliseconds to wait for the response head. */
  timeoutMs: "X-Tunnel-Timeout-Ms",
  /** Milliseconds allowed between body chunks once streaming (0 = no limit, e.g. event streams). */
  idleMs: "X-Tunnel-Idle-Ms",
  /** Set on a DO response meaning "this region has no agent": the Worker fails over. */
  noAgent: "X-Tunnel-No-Agent",
  /** Set on relayed responses: which agent served it. */
  agent: "X-Tunnel-Agent",
  /** Set by the Worker to send a request to one given connection (`connId`), e.g. to reach every agent. */
  pinConnection: "X-Tunnel-Connection",
  /** Set by the Worker for a sandbox's request: only agents of this cluster may serve it. */
  cluster: "X-Tunnel-Cluster",
  /** Set by the Worker when the caller named its request (X-Request-Id): see cancelKey. */
  cancelKey: "X-Tunnel-Cancel-Key",
  /**
   * Set by the Worker when the body streams (a file upload): the relay token binds no body hash,
   * the DO hashes the body as it passes and sends the agent a signed trailer with the end frame.
   */
  bodyTrailer: "X-Tunnel-Body-Trailer",
  /**
   * A streamed body's end mark (hex of random bytes): the Worker appends these bytes to the body
   * when, and only when, the client's upload ended cleanly within the limit. A stream that broke
   * (a client gone, a body over the limit) may reach the DO as a clean end; without its mark the
   * DO signs no trailer, so a short body is never taken as complete.
   */
  bodyEndMark: "X-Tunnel-Body-End-Mark",
  /**
   * Set by the Worker on a client's WebSocket upgrade it relays (a terminal): the DO sends the agent
   * an upgrade frame and, if the agent accepts, answers 101 with the client's socket.
   */
  websocket: "X-Tunnel-WebSocket",
} as const;

/**
 * Body bytes one TunnelDO may hold at once, all requests together: each streamed upload reserves
 * its credit window for its whole life (4 MiB), each WebSocket session its window (1 MiB), response
 * bodies count what they hold. A request that
 * would cross it is answered 503 tunnel_busy; a Durable Object has 128 MB in all.
 */
export const TUNNEL_BUFFER_BUDGET_BYTES = 48 * 1024 * 1024;

/** Bytes of a streamed body's end mark (TUNNEL_HEADERS.bodyEndMark). */
export const BODY_END_MARK_BYTES = 16;

/**
 * A request body that streams to the agent (a file upload): its bytes, followed by `endMark`'s
 * bytes only if the client's body ended cleanly within the limit (middleware/body-limit.ts).
 */
export interface StreamedBody {
  stream: ReadableStream<Uint8Array>;
  /** Hex of the mark's bytes; the DO checks the stream ends with them. */
  endMark: string;
}

/** Hex of a byte string (the end mark travels as a header). */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The DO's list of connected agents (JSON array of `{connId, agentId, cluster, …}`). */
export const TUNNEL_AGENTS_PATH = "/__tunnel/agents";

/**
 * The DO's own accounting (TunnelStats as JSON): what it holds for requests in flight. Read by
 * tests and the local stack (Miniflare's DO namespace) to check every request gives back what it took.
 */
export const TUNNEL_STATS_PATH = "/__tunnel/stats";

export interface TunnelStats {
  /** Requests (and sessions) in flight. */
  pending: number;
  /** Agent connections with requests in flight. */
  inflightConnections: number;
  cancelKeys: number;
  /** Reserved upload and session windows. */
  reservedBytes: number;
  /** Everything counted against TUNNEL_BUFFER_BUDGET_BYTES now. */
  bufferedBytes: number;
  /** Finished responses whose clients have not read everything yet. */
  draining: number;
  /** The most bufferedBytes has been since the DO started. */
  peakBufferedBytes: number;
}

/** The DO's cancel endpoint (answers `{ cancelled: n }`). */
export const TUNNEL_CANCEL_PATH = "/__tunnel/cancel";

/**
 * What a caller cancels its in-flight request by: its tenant and its own request id. The tenant is
 * part of the key, so one tenant can never stop another's request, whatever id it guesses.
 */
export function cancelKey(tenant: string, clientRequestId: string): string {
  return `${encodeURIComponent(tenant)} ${clientRequestId}`;
}
