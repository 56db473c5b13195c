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
} as const;

/** The DO's list of connected agents (JSON array of `{connId, agentId, cluster, …}`). */
export const TUNNEL_AGENTS_PATH = "/__tunnel/agents";

/** The DO's cancel endpoint (answers `{ cancelled: n }`). */
export const TUNNEL_CANCEL_PATH = "/__tunnel/cancel";

/**
 * What a caller cancels its in-flight request by: its tenant and its own request id. The tenant is
 * part of the key, so one tenant can never stop another's request, whatever id it guesses.
 */
export function cancelKey(tenant: string, clientRequestId: string): string {
  return `${encodeURIComponent(tenant)} ${clientRequestId}`;
}
