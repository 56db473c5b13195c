import type { Context, Hono } from "hono";
import { AppError, errorResponse, type Result } from "../../shared/errors.ts";
import type { RelayClaims } from "../../shared/relay-signing.ts";
import type { SandboxVars } from "../sandboxes/routes.ts";
import { acceptWebSocket, isWebSocketRequest, type WebSocketSession } from "../tunnel/ws-session.ts";

/** What a WebSocket handler learns about the upgrade (already relay-verified by the app). */
export interface WebSocketUpgrade {
  /** Path with query, as relayed. */
  path: string;
  /** The route's path parameters (`:id`, `:pid`, …). */
  params: Record<string, string>;
  query: Record<string, string>;
  /** The headers the edge forwarded (never the client's Authorization or cookies). */
  headers: Headers;
  claims: RelayClaims;
  requestId: string;
  /** Aborted when the session ends for any reason (client close, tunnel drop, cancel). */
  signal: AbortSignal;
  /** The Hono context, for a route that needs more (its middleware's variables). */
  context: Context<{ Variables: SandboxVars }>;
}

/**
 * A WebSocket route: answers the upgrade with a session, or refuses it with an error (which the
 * client sees as the HTTP answer to its upgrade: nothing is opened).
 */
export type WebSocketHandler = (upgrade: WebSocketUpgrade) => Promise<Result<WebSocketSession>>;

/**
 * Register a WebSocket route on the agent's app (the generic hook: the terminal is one, port links
 * another). It sits behind the app's `/v1/*` relay check like every route; a plain GET to it (not
 * an upgrade through the tunnel) is 426 websocket_required.
 */
export function webSocketRoute(
  app: Hono<{ Variables: SandboxVars }>,
  path: string,
  handler: WebSocketHandler,
): void {
  app.get(path, async (c) => {
    const requestId = c.get("requestId");
    if (!isWebSocketRequest(c.req.raw)) {
      return errorResponse(new AppError("websocket_required", "this route is a WebSocket"), requestId);
    }
    const url = new URL(c.req.url);
    const r = await handler({
      path: url.pathname + url.search,
      params: c.req.param() as Record<string, string>,
      query: c.req.query(),
      headers: c.req.raw.headers,
      claims: c.get("claims"),
      requestId,
      signal: c.req.raw.signal,
      context: c,
    });
    return r.ok ? acceptWebSocket(r.value) : errorResponse(r.error, requestId);
  });
}
