import { AppError } from "../../shared/errors.ts";
import { TUNNEL_PATH } from "../../shared/tunnel.ts";
import type { RouteDef } from "../app-env.ts";
import { TUNNEL_HEADERS, TUNNEL_ORIGIN } from "../relay/protocol.ts";

/**
 * GET /v1/tunnel?region=R — an agent's WebSocket. No tenant JWT: the region's TunnelDO verifies
 * the agent's own token against that region's public keys before accepting the socket.
 */
export const tunnelRoute: RouteDef = {
  method: "GET",
  path: TUNNEL_PATH,
  auth: "none",
  doc: {
    summary: "Agent tunnel (WebSocket; `Authorization: Bearer <agent JWT>`)",
    tags: ["internal"],
    parameters: [{ name: "region", in: "query", required: true, description: "the agent's region" }],
  },
  async handler(c) {
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw new AppError("invalid_request", "the tunnel expects a WebSocket upgrade");
    }
    const region = c.req.query("region") ?? "";
    const { config, tunnels } = c.get("deps");
    if (!config.regions.includes(region)) throw new AppError("invalid_request", `unknown region "${region}"`);
    const headers = new Headers();
    headers.set("Upgrade", "websocket");
    headers.set("X-Request-Id", c.get("requestId"));
    headers.set(TUNNEL_HEADERS.region, region);
    const auth = c.req.header("Authorization");
    if (auth) headers.set("Authorization", auth);
    return tunnels.fetch(region, new Request(`${TUNNEL_ORIGIN}${TUNNEL_PATH}`, { headers }));
  },
};
