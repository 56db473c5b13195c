/**
 * WebSocket sessions over the tunnel, the agent's side of the hook. A client's WebSocket ends at
 * the edge's TunnelDO; what reaches the agent is a relayed request (signed like any other, checked
 * by the app's relay middleware) marked as an upgrade, then messages both ways multiplexed on the
 * tunnel by the request's id under credit flow control (shared/tunnel.ts).
 *
 * A route that accepts the upgrade answers `acceptWebSocket(session)`; any other answer (an error
 * envelope: 404 sandbox_not_found, 409 not_a_tty, …) goes back to the edge as a plain response and
 * the client's socket is never opened. The tunnel client finds the session on the answer
 * (`sessionOf`) and pumps it. Both marks are kept by object identity (WeakMaps), never in a header,
 * so nothing a peer sends can make a plain request look like an upgrade or a response like a session.
 */

/** One WebSocket message: bytes for a binary message, a string for a text message. */
export type WsMessage = Uint8Array | string;

/** A close as the WebSocket protocol says it (RFC 6455 §7.4: 1000 normal, 1011 server error, …). */
export interface WsClose {
  code: number;
  reason: string;
}

/**
 * What a route hands the tunnel for one accepted upgrade: a duplex of messages.
 * - `outgoing`: what the session sends to the client, in order. The tunnel reads it only as fast as
 *   the edge credits bytes back (a reader of it never runs ahead of the client). Its end closes the
 *   client's socket with `closeWith()` (or 1000); an error closes it with 1011.
 * - `receive(msg)`: each client message, in order, one at a time; the tunnel credits the message's
 *   bytes back to the edge when the promise settles, so a slow session slows the client's sender
 *   (a frame storm is bounded by the credit window, not by memory). A rejection ends the session (1011).
 * - `close(c)`: the client closed, the tunnel dropped or the edge cancelled. Called once; stop
 *   everything (`outgoing` is cancelled by the tunnel too).
 */
export interface WebSocketSession {
  outgoing: ReadableStream<WsMessage>;
  receive(msg: WsMessage): Promise<void>;
  close(c: WsClose): void;
  /** How to close the client's socket once `outgoing` ended (default 1000, ""). */
  closeWith?(): WsClose;
}

const upgrades = new WeakSet<Request>();
const sessions = new WeakMap<Response, WebSocketSession>();

/** The tunnel client marks the Request it builds for an upgrade frame. */
export function markWebSocketRequest(request: Request): void {
  upgrades.add(request);
}

/** Whether this request came through the tunnel as a WebSocket upgrade. */
export function isWebSocketRequest(request: Request): boolean {
  return upgrades.has(request);
}

/** The answer that accepts an upgrade: the tunnel sends the edge a 101 and pumps `session`. */
export function acceptWebSocket(session: WebSocketSession, headers?: HeadersInit): Response {
  // Node's Response cannot carry 101; the tunnel client sends 101 for a response carrying a session.
  const res = new Response(null, { status: 200, headers });
  sessions.set(res, session);
  return res;
}

/** The session an answer accepted, if it is one (`acceptWebSocket`). */
export function sessionOf(response: Response): WebSocketSession | undefined {
  return sessions.get(response);
}
