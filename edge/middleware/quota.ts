import type { MiddlewareHandler } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";
import type { QuotaDecision } from "../durable/tenant-quota.ts";
import { setResponseHeader } from "../http/set-header.ts";

/** RateLimit-* headers (draft-ietf-httpapi-ratelimit-headers) for a decision. */
export function rateLimitHeaders(d: QuotaDecision): Record<string, string> {
  return {
    "RateLimit-Limit": String(d.limit),
    "RateLimit-Remaining": String(d.remaining),
    "RateLimit-Reset": String(d.resetSeconds),
    "RateLimit-Policy": `${d.limit};w=${d.windowSeconds}`,
  };
}

/** Per-tenant token bucket (exact, in a Durable Object); 429 with Retry-After when empty. */
export function tenantQuota(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const decision = await c
      .get("spans")
      .time("edge-quota", () => c.get("deps").quota.take(c.get("principal").tenant));
    const headers = rateLimitHeaders(decision);
    if (!decision.allowed) {
      throw new AppError("rate_limited", "tenant request quota exhausted", {
        retryAfterSeconds: decision.retryAfterSeconds,
        headers,
      });
    }
    await next();
    for (const [k, v] of Object.entries(headers)) setResponseHeader(c, k, v);
  };
}
