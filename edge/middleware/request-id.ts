import type { MiddlewareHandler } from "hono";
import { ClientRequestIdSchema } from "../../shared/api.ts";
import type { AppEnv } from "../app-env.ts";
import { setResponseHeader } from "../http/set-header.ts";

/**
 * Mint the request id here, never take it from the client (it keys logs, relays and replay
 * protection). A client's own X-Request-Id is echoed only as X-Client-Request-Id, and is the
 * handle by which the client can cancel the request.
 */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const id = crypto.randomUUID();
    c.set("requestId", id);
    const own = ClientRequestIdSchema.safeParse(c.req.header("X-Request-Id"));
    const client = own.success ? own.data : undefined;
    c.set("clientRequestId", client);
    await next();
    // A WebSocket upgrade's 101 cannot be rebuilt (it carries the socket); leave it as is.
    if (c.res.status === 101) return;
    setResponseHeader(c, "X-Request-Id", id);
    if (client) setResponseHeader(c, "X-Client-Request-Id", client);
  };
}
