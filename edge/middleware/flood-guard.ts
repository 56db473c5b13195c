import type { MiddlewareHandler } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";

/**
 * Per-IP flood guard before any crypto, using the rate-limit binding. In production that binding
 * is per location and approximate: it stops floods, it is not the tenant quota.
 */
export function floodGuard(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const ip = c.req.header("CF-Connecting-IP") ?? "unknown";
    const allowed = await c.get("spans").time("edge-flood", () => c.get("deps").floodGuard.allow(ip));
    if (!allowed) {
      throw new AppError("rate_limited", "too many requests from this address", { retryAfterSeconds: 60 });
    }
    await next();
  };
}
