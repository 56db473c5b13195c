import type { MiddlewareHandler } from "hono";
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

/** 403 unless the principal holds `scope`. */
export function requireScope(scope: string): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!c.get("principal").scopes.includes(scope)) {
      throw new AppError("insufficient_scope", `this route needs the "${scope}" scope`);
    }
    await next();
  };
}
