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
    const held = this.refilled(burst, refillPerSecond, nowMs);
    this.store(Math.max(-burst, held - Math.floor(tokens)), nowMs);
  }

  take(burst: number, refillPerSecond: number, nowMs: number = Date.now()): QuotaDecision {
    let tokens = this.refilled(burst, refillPerSecond, nowMs);
    const allowed = tokens >= 1;
    if (allowed) tokens -= 1;
    this.store(tokens, nowMs);
    return {
      allowed,
      limit: burst,
      // A bucket in debt (charge) has nothing left, not a negative amount.
      remaining: Math.max(0, Math.floor(tokens)),
      resetSeconds: Math.ceil((burst - tokens) / refillPerSecond),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / refillPerSecond)),
      windowSeconds: Math.ceil(burst / refillPerSecond),
    };
  }

  /** The bucket's tokens at `nowMs`: what it held plus the refill since, at most a burst. */
  private refilled(burst: number, refillPerSecond: number, nowMs: number): number {
    const prev = this.bucket ?? { tokens: burst, atMs: nowMs };
    const elapsed = Math.max(0, nowMs - prev.atMs) / 1000;
    return Math.min(burst, prev.tokens + elapsed * refillPerSecond);
  }

  private store(tokens: number, nowMs: number): void {
    this.bucket = { tokens, atMs: nowMs };
    // Not awaited: the output gate holds the reply until the write is durable.
    void this.ctx.storage.put("bucket", this.bucket);
  }
}
