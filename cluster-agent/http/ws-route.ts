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
 * another). It sits behind the app's `/v1/*` relay check like every route. The handler runs for a
 * plain GET too, so its refusals come in one order however it is asked; a session it returns for a
 * request that is not an upgrade through the tunnel is closed at once and the answer is 426
 * websocket_required.
 */
export function webSocketRoute(
  app: Hono<{ Variables: SandboxVars }>,
  path: string,
  handler: WebSocketHandler,
): void {
  app.get(path, async (c) => {
    const requestId = c.get("requestId");
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
    if (!r.ok) return errorResponse(r.error, requestId);
    // The route's own refusals (404, 409, 501) come first however it is asked; only a session
    // needs the upgrade.
    if (!isWebSocketRequest(c.req.raw)) {
      r.value.close({ code: 1002, reason: "not an upgrade" });
      await r.value.outgoing.cancel().catch(() => undefined);
      return errorResponse(new AppError("websocket_required", "this route is a WebSocket"), requestId);
    }
    return acceptWebSocket(r.value);
  });
}
