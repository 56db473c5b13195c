import { Hono, type MiddlewareHandler } from "hono";
import { AppError, errorResponse, toAppError } from "../shared/errors.ts";
import type { AppEnv, RouteDef } from "./app-env.ts";
import type { EdgeDeps } from "./deps.ts";
import type { Env } from "./env.ts";
import { portLinkProxy } from "./links/proxy.ts";
import { requireScope, tenantAuth } from "./middleware/auth.ts";
import { bodyLimit } from "./middleware/body-limit.ts";
import { floodGuard } from "./middleware/flood-guard.ts";
import { localOnlyInDev } from "./middleware/local-only.ts";
import { tenantQuota } from "./middleware/quota.ts";
import { requestId } from "./middleware/request-id.ts";
import { serverTiming } from "./middleware/server-timing.ts";
import { ROUTES } from "./routes/index.ts";
import { mcpRoutes } from "./routes/mcp.ts";
import { openApiRoute } from "./routes/openapi.ts";

export interface CreateAppOptions {
  routes?: readonly RouteDef[];
}

/**
 * The edge app. Order per request: request id → timing spans → local hostnames only (dev/test
 * environments) → flood guard (per IP) → [a port link's host: links/proxy.ts, nothing else] → [tenant routes: JWT →
 * scope → per-tenant quota → body limit] → route. Every failure, 404 and 405 included, is the
 * shared error envelope with the request id.
 */
export function createApp(getDeps: (env: Env) => EdgeDeps, opts: CreateAppOptions = {}): Hono<AppEnv> {
  const base = opts.routes ?? ROUTES;
  const app = new Hono<AppEnv>();
  // MCP tool calls are dispatched through this same app, so they pass every check a route call does.
  const routes: RouteDef[] = [...base, ...mcpRoutes(() => app), openApiRoute(() => routes)];

  app.use("*", requestId());
  app.use("*", serverTiming());
  app.use("*", async (c, next) => {
    c.set("deps", getDeps(c.env));
    await next();
  });
  app.use("*", localOnlyInDev());
  app.use("*", floodGuard());
  // A port link's host is served by the link proxy alone, never by an API route.
  app.use("*", portLinkProxy());

  for (const r of routes) {
    const chain: MiddlewareHandler<AppEnv>[] = [];
    if (r.auth === "tenant") {
      chain.push(tenantAuth({ subprotocol: r.websocket === true }));
      if (r.scope) chain.push(requireScope(...[r.scope].flat()));
      chain.push(tenantQuota());
    }
    if (r.body) chain.push(bodyLimit(r.bodyLimit));
    const handler: MiddlewareHandler<AppEnv> = async (c) => r.handler(c);
    app.on(r.method, r.path, ...(chain as []), handler);
  }

  app.notFound((c) => {
    const path = c.req.path;
    const allowed = routes.filter((r) => matches(r.path, path)).map((r) => r.method);
    const id = c.get("requestId") ?? crypto.randomUUID();
    if (allowed.length > 0) {
      return errorResponse(new AppError("method_not_allowed", `${c.req.method} not allowed here`), id, {
        Allow: [...new Set(allowed)].join(", "),
      });
    }
    return errorResponse(new AppError("not_found", `no route for ${c.req.method} ${path}`), id);
  });
  app.onError((e, c) => {
    const id = c.get("requestId") ?? crypto.randomUUID();
    const appError = toAppError(e);
    if (appError.code === "internal") {
      // The client gets no detail; the log line (with the request id) gets all of it.
      const cause = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
      console.error(JSON.stringify({ level: "error", requestId: id, path: c.req.path, error: cause }));
    }
    return errorResponse(appError, id);
  });
  return app;
}

function matches(pattern: string, path: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\\?:\w+/g, "[^/]+")}/?$`);
  return re.test(path);
}
