import type { MiddlewareHandler } from "hono";
import { SCOPES } from "../../shared/api.ts";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";

/** Verify the tenant's bearer JWT; 401 with a specific code on any failure. */
export function tenantAuth(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header("Authorization");
    const token = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
    if (header && !token) throw new AppError("unauthenticated", "Authorization must be 'Bearer <token>'");
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
