import type { Hono } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppContext, AppEnv, RouteDef } from "../app-env.ts";
import { readJson } from "../http/json.ts";
import { authenticateMcp, MCP_PATH, RESOURCE_METADATA_PATH, resourceMetadata } from "../mcp/auth.ts";
import { RouteClient } from "../mcp/route-client.ts";
import { handleMcpPost } from "../mcp/server.ts";
import { bodyLimit } from "../middleware/body-limit.ts";
import { tenantQuota } from "../middleware/quota.ts";

/** The headers an inner route call carries: the caller's own token and address, nothing else. */
function forwardedHeaders(c: AppContext): Record<string, string> {
  const h: Record<string, string> = {
    Accept: "application/json",
    Authorization: c.req.header("Authorization") ?? "",
  };
  const ip = c.req.header("CF-Connecting-IP");
  if (ip) h["CF-Connecting-IP"] = ip;
  return h;
}

function executionContext(c: AppContext): AppContext["executionCtx"] | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined;
  }
}

/**
 * POST/GET/DELETE /mcp (Streamable HTTP, stateless) and the protected-resource metadata.
 * `getApp` is the edge app itself: tool calls are dispatched through it as ordinary requests.
 */
export function mcpRoutes(getApp: () => Hono<AppEnv>): RouteDef[] {
  const post: RouteDef = {
    method: "POST",
    path: MCP_PATH,
    // Authenticated in the handler (an MCP 401 carries a WWW-Authenticate challenge), and the body
    // read only after that: an unauthenticated caller never gets MAX_BODY_BYTES buffered.
    auth: "none",
    doc: {
      summary:
        "MCP (Streamable HTTP, protocol 2025-06-18+, stateless, JSON responses): the sandbox tools for any MCP client; tenant JWT as Bearer",
      tags: ["mcp"],
    },
    async handler(c) {
      const who = await authenticateMcp(c);
      // Every MCP message costs a token like any request (initialize and tools/list included); a
      // tools/call costs one more, as the route call it dispatches passes the quota again.
      c.set("principal", who.principal);
      await tenantQuota()(c, async () => {});
      await bodyLimit("request")(c, async () => {});
      const parsedBody = readJson(c);
      const origin = new URL(c.req.url).origin;
      const ctx = executionContext(c);
      const client = new RouteClient(
        (req) => Promise.resolve(getApp().fetch(req, c.env, ctx)),
        origin,
        forwardedHeaders(c),
      );
      return handleMcpPost(c.req.raw, parsedBody, who, client);
    },
  };
  // Stateless server: no stream to open and no session to end. The transport spec's answer is 405.
  const notOffered = (method: "GET" | "DELETE", why: string): RouteDef => ({
    method,
    path: MCP_PATH,
    auth: "none",
    doc: { summary: `405: ${why}`, tags: ["mcp"] },
    async handler(c) {
      await authenticateMcp(c);
      throw new AppError("method_not_allowed", `${method} /mcp: ${why}`, { headers: { Allow: "POST" } });
    },
  });
  const metadata = (path: string): RouteDef => ({
    method: "GET",
    path,
    auth: "none",
    doc: { summary: "OAuth protected-resource metadata (RFC 9728) for /mcp", tags: ["mcp"] },
    handler(c) {
      const origin = new URL(c.req.url).origin;
      return c.json(resourceMetadata(origin, c.get("deps").config.jwt.issuer), 200, {
        "Cache-Control": "public, max-age=300",
      });
    },
  });
  return [
    post,
    notOffered("GET", "this server sends no server-initiated messages (stateless)"),
    notOffered("DELETE", "this server keeps no MCP session (stateless)"),
    metadata(RESOURCE_METADATA_PATH),
    metadata(`${RESOURCE_METADATA_PATH}${MCP_PATH}`),
  ];
}
