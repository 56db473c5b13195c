import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";

/** The outcome of taking one token from a tenant's bucket. */
export interface QuotaDecision {
  allowed: boolean;
  limit: number;
  /** Whole tokens left after this request. */
  remaining: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
  /** Seconds until one token is available (0 when allowed). */
  retryAfterSeconds: number;
  /** Seconds the bucket takes to refill from empty (the policy window). */
  windowSeconds: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * One token bucket per tenant (the DO is named by tenant). Exact: a DO runs one event at a time
 * and `take` never awaits between reading and writing the bucket, so concurrent requests cannot
 * both spend the last token. State is persisted so an evicted bucket does not refill for free.
 */
export class TenantQuotaDO extends DurableObject<Env> {
  private bucket: Bucket | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      this.bucket = (await ctx.storage.get<Bucket>("bucket")) ?? null;
    });
  }

  /**
   * Takes `tokens` for work already done (a chat turn's model calls after its first), whether or not
   * the bucket holds them: the bucket may go into debt, down to minus one burst, so a tenant whose
   * turns made many model calls waits for the refill before its next request. Bounded so one long
   * turn never locks a tenant out for more than two windows.
   */
  charge(tokens: number, burst: number, refillPerSecond: number, nowMs: number = Date.now()): void {
    if (!(tokens > 0)) return;
    const prev = this.bucket ?? { tokens: burst, atMs: nowMs };
    const elapsed = Math.max(0, nowMs - prev.atMs) / 1000;
    const refilled = Math.min(burst, prev.tokens + elapsed * refillPerSecond);
    this.bucket = { tokens: Math.max(-burst, refilled - Math.floor(tokens)), atMs: nowMs };
    void this.ctx.storage.put("bucket", this.bucket);
  }

  take(burst: number, refillPerSecond: number, nowMs: number = Date.now()): QuotaDecision {
    const prev = this.bucket ?? { tokens: burst, atMs: nowMs };
    const elapsed = Math.max(0, nowMs - prev.atMs) / 1000;
    let tokens = Math.min(burst, prev.tokens + elapsed * refillPerSecond);
    const allowed = tokens >= 1;
    if (allowed) tokens -= 1;
    this.bucket = { tokens, atMs: nowMs };
    // Not awaited: the output gate holds the reply until the write is durable.
    void this.ctx.storage.put("bucket", this.bucket);
    return {
      allowed,
      limit: burst,
      remaining: Math.floor(tokens),
      resetSeconds: Math.ceil((burst - tokens) / refillPerSecond),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / refillPerSecond)),
      windowSeconds: Math.ceil(burst / refillPerSecond),
    };
  }
}
