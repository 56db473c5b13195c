import type { MiddlewareHandler } from "hono";
import { formatServerTiming, Spans, spansForLog } from "../../shared/spans.ts";
import type { AppEnv } from "../app-env.ts";
import { setResponseHeader } from "../http/set-header.ts";

/**
 * One `Spans` per request (`c.get("spans")`): middleware and the relay record into it, the relay
 * merges the agent's spans in as `agent-*`, and on the way out this writes them with `edge-total`
 * as the `Server-Timing` header of every response, errors included (it replaces any header a
 * relayed response carried). A streamed response's head leaves before its body, so it carries
 * only what happened before the head. With `LOG_REQUEST_TIMING` the same spans are logged, one
 * line per request.
 */
export function serverTiming(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const spans = new Spans();
    c.set("spans", spans);
    await next();
    if (c.res.status === 101) return;
    spans.add("edge-total", spans.elapsed());
    setResponseHeader(c, "Server-Timing", formatServerTiming(spans.all));
    if (c.get("deps")?.config.logRequestTiming) {
      console.log(
        JSON.stringify({
          level: "info",
          msg: "request timing",
          requestId: c.get("requestId"),
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          spans: spansForLog(spans.all),
        }),
      );
    }
  };
}
