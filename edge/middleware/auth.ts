import type { MiddlewareHandler } from "hono";
import { BEARER_SUBPROTOCOL_PREFIX, SCOPES } from "../../shared/api.ts";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";

/**
 * Verify the tenant's bearer JWT; 401 with a specific code on any failure. On a WebSocket route
 * (`subprotocol`), a client without Authorization (a browser) may offer the token as a
 * `bearer.<jwt>` entry of Sec-WebSocket-Protocol. The token is never logged or echoed: the edge
 * selects only the route's own subprotocol, and nothing forwards this header to an agent.
 */
export function tenantAuth(opts: { subprotocol?: boolean } = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("Authorization");
    let token = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
    if (header && !token) throw new AppError("unauthenticated", "Authorization must be 'Bearer <token>'");
    if (!header && opts.subprotocol) token = subprotocolToken(c.req.header("Sec-WebSocket-Protocol"));
    const who = await c.get("spans").time("edge-auth", () => c.get("deps").tokens.verify(token));
    if (!who.ok) throw who.error;
    c.set("principal", who.value);
    await next();
  };
}

/** 403 unless the principal holds one of `scopes` (as granted: tenant-jwt.ts drops a non-admin's admin scope). */
export function requireScope(...scopes: string[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    assertScope(c.get("principal").scopes, scopes);
    await next();
  };
}

export function assertScope(held: readonly string[], needed: readonly string[]): void {
  if (needed.some((s) => held.includes(s))) return;
  if (needed.includes(SCOPES.admin)) {
    throw new AppError(
      "insufficient_scope",
      `this route needs an admin token: the "${SCOPES.admin}" scope, from a subject in ADMIN_SUBJECTS or for ADMIN_AUDIENCE`,
    );
  }
  throw new AppError(
    "insufficient_scope",
    `this route needs the ${needed.map((s) => `"${s}"`).join(" or ")} scope`,
  );
}

/** The JWT a WebSocket client offered as a `bearer.<jwt>` subprotocol (at most one), if any. */
export function subprotocolToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const offered = header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX));
  if (offered.length > 1) throw new AppError("unauthenticated", "offer one bearer subprotocol, not several");
  const token = offered[0]?.slice(BEARER_SUBPROTOCOL_PREFIX.length);
  return token ? token : undefined;
}
