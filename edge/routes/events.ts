import type { RouteDef } from "../app-env.ts";
import { finishRelay } from "../http/relay-response.ts";
import { clientHeaders, regionOrder } from "../relay/from-context.ts";
import { relayToRegions } from "../relay/relay.ts";
import { requestedRegions } from "./pool.ts";

/** GET /v1/events — a region's live PoolEvent stream (SSE) passed through from one of its agents. */
export const eventsRoute: RouteDef = {
  method: "GET",
  path: "/v1/events",
  auth: "tenant",
  scope: "sandbox:admin",
  doc: {
    summary: "Live pool events of one region (SSE: `snapshot` then PoolEvent messages)",
    tags: ["admin"],
    responseContentType: "text/event-stream",
    parameters: [
      { name: "region", in: "query", description: "region to watch (default: nearest, with failover)" },
    ],
  },
  async handler(c) {
    const { config, tunnels } = c.get("deps");
    const asked = c.req.query("region") !== undefined ? requestedRegions(c) : null;
    const out = await relayToRegions(config, tunnels, {
      method: "GET",
      path: "/v1/events",
      body: null,
      headers: clientHeaders(c, "text/event-stream"),
      principal: c.get("principal"),
      requestId: c.get("requestId"),
      regions: asked ?? regionOrder(c),
      timeoutMs: Math.min(config.relayTimeoutMs, 15_000),
      // An event stream may be quiet for long; the agent's keep-alives are not required.
      idleMs: 0,
    });
    return finishRelay(c, out);
  },
};
