import type { MiddlewareHandler } from "hono";
import { PORT_LINK_RELAY_SCOPE, PORT_LINK_TOKEN, SCOPES } from "../../shared/api.ts";
import { AppError } from "../../shared/errors.ts";
import {
  linkNotFound,
  type PortLinkClaims,
  unverifiedSandboxOf,
  verifyPortLink,
} from "../../shared/port-link-token.ts";
import type { AppContext, AppEnv } from "../app-env.ts";
import { finishRelay } from "../http/relay-response.ts";
import { assertScope } from "../middleware/auth.ts";
import { countedUpload } from "../middleware/body-limit.ts";
import { rateLimitHeaders } from "../middleware/quota.ts";
import { relayFrom } from "../relay/from-context.ts";
import { TUNNEL_HEADERS } from "../relay/protocol.ts";
import { sandboxWhere } from "../routes/sandboxes.ts";
import { linkKeyFor } from "./keys.ts";
import { linkIdOfHost } from "./url.ts";

/**
 * Requests to a port link (`<link id>.<edge host>`): served here, before any API route, and never
 * by one. Order: token (query, then header, then cookie) → its region's key verifies it, the host
 * is the token's own link → private link: the tenant's JWT, same tenant → the tenant's quota
 * (a public link's requests are charged to the sandbox's tenant: links are not a way around it;
 * the IP flood guard ran before) → relayed through the one relay builder to the sandbox's cluster,
 * where the agent checks the link is still open and proxies to the port. Every failure about the
 * link itself is the same 404 link_not_found.
 */
export function portLinkProxy(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const linkId = linkIdOfHost(c.req.header("host") ?? new URL(c.req.url).host);
    if (!linkId) return next();
    const found = tokenOf(c);
    if (!found) throw linkNotFound();
    const claims = await verified(c, found.token, linkId);
    const { tokens, quota, config } = c.get("deps");
    let subject = `link:${linkId}`;
    if (!claims.pub) {
      const header = c.req.header("Authorization");
      const jwt = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
      if (!jwt)
        throw new AppError(
          "unauthenticated",
          "a private link needs the tenant's token (Authorization: Bearer)",
        );
      const who = await c.get("spans").time("edge-auth", () => tokens.verify(jwt));
      if (!who.ok) throw who.error;
      // Another tenant's token on this link: the link does not exist for it.
      if (who.value.tenant !== claims.tid) throw linkNotFound();
      assertScope(who.value.scopes, [SCOPES.exec]);
      subject = who.value.subject;
    }
    const decision = await c.get("spans").time("edge-quota", () => quota.take(claims.tid));
    if (!decision.allowed) {
      throw new AppError("rate_limited", "the sandbox's tenant is over its request quota", {
        retryAfterSeconds: decision.retryAfterSeconds,
        headers: rateLimitHeaders(decision),
      });
    }
    const where = sandboxWhere(config.regions, claims.sid);
    if (!where) throw linkNotFound();
    c.set("principal", {
      tenant: claims.tid,
      subject,
      scopes: [PORT_LINK_RELAY_SCOPE],
      region: where.region,
    });
    const url = new URL(c.req.url);
    const agentPath = `/v1/sandboxes/${claims.sid}/ports/${claims.port}/proxy/${linkId}${appPathOf(url)}`;
    const method = c.req.method;
    if (c.req.header("Upgrade")?.toLowerCase() === "websocket") {
      // A WebSocket through the link: the agent opens the app's socket first; only its 101 opens the
      // client's (the app's chosen subprotocol with it). One quota token per session, not per message.
      const out = await relayFrom(c, {
        method: "GET",
        path: agentPath,
        regions: [where.region],
        cluster: where.cluster,
        websocket: true,
        portRequestHeaders: appHeaders(c, url, !claims.pub),
      });
      const res = out.response;
      if (res.status !== 101 || !res.webSocket) return finishRelay(c, out);
      const headers = new Headers({ "X-Request-Id": c.get("requestId") });
      const protocol = res.headers.get("sec-websocket-protocol");
      if (protocol) headers.set("Sec-WebSocket-Protocol", protocol);
      if (found.from === "query")
        headers.append("set-cookie", tokenCookie(found.token, claims, url.protocol));
      return new Response(null, { status: 101, webSocket: res.webSocket, headers });
    }
    const hasBody = method !== "GET" && method !== "HEAD" && c.req.raw.body !== null;
    let over = false;
    const body = hasBody
      ? countedUpload(c.req.raw.body, config.maxFileBytes, () => {
          over = true;
        })
      : null;
    const out = await relayFrom(c, {
      method,
      path: agentPath,
      body,
      regions: [where.region],
      cluster: where.cluster,
      // An app's stream (server-sent events, a long download) may pause for as long as it likes.
      idleMs: 0,
      // A private link's Authorization is the tenant's JWT, for the edge only; a public one's is the app's.
      portRequestHeaders: appHeaders(c, url, !claims.pub),
    });
    if (over)
      throw new AppError("payload_too_large", `request body is larger than ${config.maxFileBytes} bytes`);
    const headers = new Headers();
    for (const [name, value] of out.response.headers) {
      if (name === "set-cookie") continue;
      headers.append(name, value);
    }
    for (const h of Object.values(TUNNEL_HEADERS)) headers.delete(h);
    for (const cookie of out.response.headers.getSetCookie()) headers.append("set-cookie", hostOnly(cookie));
    if (found.from === "query") headers.append("set-cookie", tokenCookie(found.token, claims, url.protocol));
    headers.set("X-Request-Id", c.get("requestId"));
    return new Response(out.response.body, { status: out.response.status, headers });
  };
}

/**
 * The app's path and query as the client sent them, without the link's token: the query is cut
 * by hand, not re-serialized, so the app sees its parameters encoded exactly as they came.
 */
function appPathOf(url: URL): string {
  const kept = url.search
    .slice(1)
    .split("&")
    .filter((p) => p !== "" && p.split("=", 1)[0] !== PORT_LINK_TOKEN.query);
  return `${url.pathname}${kept.length > 0 ? `?${kept.join("&")}` : ""}`;
}

function tokenOf(c: AppContext): { token: string; from: "query" | "header" | "cookie" } | undefined {
  const q = new URL(c.req.url).searchParams.get(PORT_LINK_TOKEN.query);
  if (q) return { token: q, from: "query" };
  const h = c.req.header(PORT_LINK_TOKEN.header);
  if (h) return { token: h.trim(), from: "header" };
  const cookie = cookieValue(c.req.header("cookie"), PORT_LINK_TOKEN.cookie);
  return cookie ? { token: cookie, from: "cookie" } : undefined;
}

async function verified(c: AppContext, token: string, linkId: string): Promise<PortLinkClaims> {
  const config = c.get("deps").config;
  // The sandbox id picks the region whose key verifies the token; nothing else is trusted before.
  const where = sandboxWhere(config.regions, unverifiedSandboxOf(token) ?? "");
  if (!where) throw linkNotFound();
  const claims = await verifyPortLink(await linkKeyFor(config, where.region), token);
  // A token presented on another link's host (another origin) is not this link's.
  if (!claims.ok || claims.value.lid !== linkId) throw linkNotFound();
  return claims.value;
}

/** Never passed to the sandbox's app: the edge's own, the link's token, the tenant's JWT (private links). */
const DROP = new Set([
  "host",
  "cookie",
  PORT_LINK_TOKEN.header,
  "content-length",
  "connection",
  "keep-alive",
]);

/** The client's headers as the app sees them, with the usual X-Forwarded-* of a reverse proxy. */
function appHeaders(c: AppContext, url: URL, dropAuthorization: boolean): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of c.req.raw.headers) {
    if (DROP.has(name) || name.startsWith("cf-") || name.startsWith("x-forwarded-")) continue;
    if (name === "authorization" && dropAuthorization) continue;
    out.push([name, value]);
  }
  // Iterating a request's headers in workerd leaves Content-Length out; an app that reads a body
  // by its length (python's http.server does) needs it.
  const length = c.req.header("content-length");
  if (length !== undefined && !out.some(([n]) => n === "content-length"))
    out.push(["content-length", length]);
  const cookies = (c.req.header("cookie") ?? "")
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s && !s.startsWith(`${PORT_LINK_TOKEN.cookie}=`));
  if (cookies.length > 0) out.push(["cookie", cookies.join("; ")]);
  out.push(["x-forwarded-host", url.host], ["x-forwarded-proto", url.protocol.replace(":", "")]);
  return out;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return v.join("=");
  }
  return undefined;
}

/**
 * The token as a cookie of this link's host only (no Domain): the page's own requests, absolute
 * paths included, carry it; HttpOnly so the app's scripts cannot read it; it ends with the link.
 */
function tokenCookie(token: string, claims: PortLinkClaims, protocol: string): string {
  const maxAge = Math.max(0, claims.exp - Math.floor(Date.now() / 1000));
  const secure = protocol === "https:" ? "; Secure" : "";
  return `${PORT_LINK_TOKEN.cookie}=${token}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure}`;
}

/** An app's cookie kept to its own link's host: a `Domain` would reach the edge and every other link. */
function hostOnly(cookie: string): string {
  return cookie
    .split(";")
    .filter((part) => !/^\s*domain\s*=/i.test(part))
    .join(";");
}
