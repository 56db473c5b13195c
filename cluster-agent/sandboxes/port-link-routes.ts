import type { Context, Hono } from "hono";
import {
  LinkIdSchema,
  PORT_REQUEST_HEADERS_HEADER,
  PortLinkCreateRequestSchema,
  PortParamSchema,
  PortRequestHeadersSchema,
} from "../../shared/api.ts";
import { AppError, errorResponse, ok, parseOrError, type Result } from "../../shared/errors.ts";
import { linkNotFound } from "../../shared/port-link-token.ts";
import type { PortResponse, PortSocket } from "../exec/executor.ts";
import { acceptWebSocket, isWebSocketRequest, type WebSocketSession } from "../tunnel/ws-session.ts";
import { type SandboxExecDeps, withSandbox } from "./exec.ts";
import type { PortLinks } from "./port-links.ts";
import type { ProcessRouteHelpers } from "./process-routes.ts";
import type { SandboxVars } from "./routes.ts";

type Ctx = Context<{ Variables: SandboxVars }>;

/** `/v1/sandboxes/<id>/ports/<port>/proxy/<linkId><the app's path and query>`: a link's request, as the edge relays it. */
const PROXY_PATH = /^\/v1\/sandboxes\/([^/]+)\/ports\/([^/]+)\/proxy\/([^/?]+)(\/[^#]*)?$/s;

/** A port link's request, relayed by the edge: it carries the link scope, nothing else does. */
export const isPortProxy = (path: string) => PROXY_PATH.test(path);

/**
 * /v1/sandboxes/:id/ports…: links to a sandbox's ports (issue 27 item 3). Creating, listing and
 * revoking write the link list on the sandbox's Lease (port-links.ts). A link's request
 * (`…/ports/:port/proxy/:linkId/…`, relayed by the edge after it verified the link's token) is
 * checked against that list — revoked, expired, another port, the sandbox gone or another
 * tenant's: all `link_not_found` — and is then one use of the sandbox through the pipeline (its
 * keep-alive, fence, `lease_lost`, `sandbox_evicted`) to the pod's exec server, which proxies it
 * to 127.0.0.1:<port>. api mode has no exec server: `501 not_supported_in_api_mode`.
 */
export function portLinkRoutes(
  app: Hono<{ Variables: SandboxVars }>,
  deps: SandboxExecDeps & { links: PortLinks },
  h: ProcessRouteHelpers,
): void {
  const fail = (c: Ctx, e: AppError) => errorResponse(e, c.get("requestId"));
  const tenantOf = (c: Ctx) => c.get("claims").tenant;
  const apiMode = () =>
    new AppError(
      "not_supported_in_api_mode",
      "port links need the sandbox's exec server (EXEC_MODE=http); this agent runs commands over pods/exec",
    );

  /** The `:id` and `:port` of a management route, or the error to answer. */
  const target = (c: Ctx): Result<{ id: string; port: number }> => {
    const id = c.req.param("id") ?? "";
    if (!h.ownId(id)) return { ok: false, error: new AppError("sandbox_not_found", `no sandbox ${id}`) };
    const port = parseOrError(PortParamSchema, c.req.param("port") ?? "", "port");
    if (!port.ok) return { ok: false, error: new AppError("port_not_allowed", port.error.message) };
    const refused = deps.links.refusedPort(port.value);
    return refused ? { ok: false, error: refused } : ok({ id, port: port.value });
  };

  app.post("/v1/sandboxes/:id/ports/:port/links", async (c) => {
    const t = target(c);
    if (!t.ok) return fail(c, t.error);
    // Another tenant's sandbox is 404 first, as on every route; then the mode.
    if (!deps.links.exists(tenantOf(c), t.value.id))
      return fail(c, new AppError("sandbox_not_found", `no sandbox ${t.value.id}`));
    if (!deps.ports) return fail(c, apiMode());
    const body = h.json(c.get("body"));
    if (!body.ok) return fail(c, body.error);
    const req = parseOrError(PortLinkCreateRequestSchema, body.value, "link request");
    if (!req.ok) return fail(c, req.error);
    const r = await deps.links.create(tenantOf(c), t.value.id, c.get("requestId"), t.value.port, req.value);
    return r.ok ? c.json(r.value, 201) : fail(c, r.error);
  });

  app.get("/v1/sandboxes/:id/ports/links", (c) => {
    const id = c.req.param("id");
    if (!h.ownId(id)) return fail(c, new AppError("sandbox_not_found", `no sandbox ${id}`));
    const r = deps.links.list(tenantOf(c), id);
    return r.ok ? c.json({ links: r.value }) : fail(c, r.error);
  });

  app.delete("/v1/sandboxes/:id/ports/:port/links/:linkId", async (c) => {
    const t = target(c);
    if (!t.ok) return fail(c, t.error);
    const linkId = c.req.param("linkId");
    if (!LinkIdSchema.safeParse(linkId).success) return fail(c, linkNotFound());
    const r = await deps.links.revoke(tenantOf(c), t.value.id, c.get("requestId"), t.value.port, linkId);
    return r.ok ? c.body(null, 204) : fail(c, r.error);
  });

  app.all("/v1/sandboxes/:id/ports/:port/proxy/*", async (c) => {
    const url = new URL(c.req.url);
    const m = PROXY_PATH.exec(url.pathname + url.search);
    const port = PortParamSchema.safeParse(m?.[2] ?? "");
    const id = m?.[1] ?? "";
    const linkId = m?.[3] ?? "";
    // Nothing about the target is told apart: every miss is the same 404.
    if (!m || !port.success || !h.ownId(id)) return fail(c, linkNotFound());
    const tenant = tenantOf(c);
    const link = await deps.links.check(tenant, id, linkId, port.data);
    if (!link.ok) return fail(c, link.error);
    if (!deps.ports) return fail(c, apiMode());
    const headers = PortRequestHeadersSchema.safeParse(
      safeJson(c.req.header(PORT_REQUEST_HEADERS_HEADER) ?? "[]"),
    );
    if (!headers.success)
      return fail(c, new AppError("invalid_request", "malformed proxied request headers"));
    const method = c.req.method;
    const ctx = {
      tenant,
      requestId: c.get("requestId"),
      signal: c.req.raw.signal,
      what: `link port ${port.data}`,
    };
    if (isWebSocketRequest(c.req.raw)) {
      return linkWebSocket(c, deps, id, ctx, { port: port.data, path: m[4] ?? "/", headers: headers.data });
    }
    const body = method === "GET" || method === "HEAD" ? undefined : (c.get("bodyStream") ?? c.get("body"));
    const r = await withSandbox(deps, id, ctx, (sb) =>
      sb.onPorts((ports, t, signal) =>
        ports.proxy(
          t,
          {
            port: port.data,
            method,
            path: m[4] ?? "/",
            headers: headers.data,
            ...(body !== undefined ? { body } : {}),
          },
          { signal },
        ),
      ),
    );
    // The sandbox went away or passed on between the check and the use: still the link's 404.
    if (!r.ok) return fail(c, r.error.code === "sandbox_not_found" ? linkNotFound() : r.error);
    return appResponse(r.value);
  });
}

/**
 * A link's WebSocket: the app's socket through the pod's exec server, opened before the client's
 * upgrade is accepted (a server that refuses or is not listening is the client's HTTP answer), and
 * a use of the sandbox for as long as it is open. Messages pass as they are, both ways, under the
 * tunnel's credit.
 */
function linkWebSocket(
  c: Ctx,
  deps: SandboxExecDeps,
  id: string,
  ctx: { tenant: string; requestId: string; signal: AbortSignal; what: string },
  req: { port: number; path: string; headers: Array<[string, string]> },
): Promise<Response> {
  // The handshake's own headers are the agent's to send; the offered subprotocols go to the app.
  const protocols = req.headers
    .filter(([n]) => n === "sec-websocket-protocol")
    .flatMap(([, v]) => v.split(","))
    .map((p) => p.trim())
    .filter((p) => p !== "");
  const headers = req.headers.filter(([n]) => !n.startsWith("sec-websocket-") && n !== "upgrade");
  return new Promise<Response>((answer) => {
    withSandbox(deps, id, ctx, async (sb) => {
      const detach = new AbortController();
      const sock = await sb.onPorts(
        (ports, t, signal) =>
          ports.webSocket(t, { port: req.port, path: req.path, headers, protocols }, { signal }),
        detach.signal,
      );
      if (!sock.ok) return sock;
      let ended: () => void = () => {};
      const done = new Promise<void>((resolve) => {
        ended = resolve;
      });
      const session = linkSession(sock.value, () => {
        detach.abort();
        ended();
      });
      answer(
        acceptWebSocket(
          session,
          sock.value.protocol ? { "sec-websocket-protocol": sock.value.protocol } : undefined,
        ),
      );
      await done;
      return ok(undefined);
    }).then((r) => {
      // Only a refusal before the session answers here; after it the session is out.
      if (!r.ok)
        answer(
          errorResponse(r.error.code === "sandbox_not_found" ? linkNotFound() : r.error, c.get("requestId")),
        );
    });
  });
}

/** The app's socket as a tunnel session; `end` (once, whichever side ends first) ends the sandbox use. */
function linkSession(sock: PortSocket, end: () => void): WebSocketSession {
  return {
    outgoing: sock.messages.pipeThrough(
      new TransformStream({
        flush: () => end(),
      }),
    ),
    receive: (msg) => sock.send(msg),
    close: (why) => {
      sock.close(why.code, why.reason);
      end();
    },
    closeWith: () => {
      const app = sock.closedWith();
      // 1005/1006 say "no code" / "no close frame": the client is told a plain 1000.
      return app.code === 1005 || app.code === 1006 ? { code: 1000, reason: "" } : app;
    },
  };
}

function appResponse(r: PortResponse): Response {
  // An interim or upgrade answer cannot travel as a relayed response (WebSocket links: not yet).
  if (r.status < 200) {
    return errorResponse(
      new AppError("sandbox_failed", `the app answered ${r.status}, which a link cannot carry`),
      "",
    );
  }
  const headers = new Headers();
  for (const [name, value] of r.headers) headers.append(name, value);
  return new Response(r.body, { status: r.status, headers });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
