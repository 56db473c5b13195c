import { APIConnectionError, APIError, APIUserAbortError } from "openai";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";

/**
 * Retries of the model call. The openai client's own retries are switched off (maxRetries: 0)
 * because its sleep cannot be aborted and it honours any Retry-After up to 60 s; this loop is
 * abortable, bounded in attempts, and gives up at once when the server asks for a long wait.
 */
export interface RetryPolicy {
  /** Total attempts including the first. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this ends the retries (reported in `retryAfterSeconds`). */
  maxRetryAfterMs: number;
  /** Injected for tests; [0, 1). */
  random?: () => number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 4,
  baseDelayMs: 500,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 10_000,
};

/**
 * What a caller is told when the model fails. The provider's own words (its error body, its
 * status, a connection error naming its address) may carry account, quota or deployment details:
 * they are the `cause`, for the log under the request id (run-chat.ts), never the message.
 */
const UNAVAILABLE = "the model server is unavailable";

/** Why an attempt failed, as far as retrying is concerned. */
export type AttemptFailure =
  | { kind: "aborted" }
  | { kind: "retryable"; message: string; retryAfterMs?: number }
  | { kind: "fatal"; message: string };

/** Classifies an exception thrown by the openai client (or by our idle timer, see model-turn.ts). */
export function classifyModelError(e: unknown, callerSignal: AbortSignal): AttemptFailure {
  if (callerSignal.aborted) return { kind: "aborted" };
  if (e instanceof ModelIdleTimeout) return { kind: "retryable", message: e.message };
  if (e instanceof APIUserAbortError) return { kind: "retryable", message: "the model request was aborted" };
  if (e instanceof APIConnectionError)
    return { kind: "retryable", message: `connection failed: ${e.message}` };
  if (e instanceof APIError) {
    const status = e.status ?? 0;
    const message = `the model server answered ${status}: ${e.message}`;
    if (status === 408 || status === 409 || status === 429 || status >= 500) {
      const retryAfterMs = retryAfterMsOf(e.headers);
      return retryAfterMs === undefined
        ? { kind: "retryable", message }
        : { kind: "retryable", message, retryAfterMs };
    }
    return { kind: "fatal", message };
  }
  return { kind: "fatal", message: `the model call failed: ${e instanceof Error ? e.message : String(e)}` };
}

/** Thrown (into the stream) when the model server stops sending for too long. */
export class ModelIdleTimeout extends Error {
  constructor(ms: number) {
    super(`the model server sent nothing for ${ms} ms`);
    this.name = "ModelIdleTimeout";
  }
}

export function retryAfterMsOf(headers: Headers | undefined): number | undefined {
  const ms = headers?.get("retry-after-ms");
  if (ms) {
    const n = Number.parseFloat(ms);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  const ra = headers?.get("retry-after");
  if (ra) {
    const seconds = Number(ra);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(ra);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  return undefined;
}

/** Exponential backoff with jitter in [delay/2, delay]: spreads out replicas retrying together. */
export function backoffMs(attempt: number, policy: RetryPolicy): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const r = (policy.random ?? Math.random)();
  return Math.round(exp / 2 + (exp / 2) * r);
}

/**
 * Runs `attempt` until it succeeds, fails fatally, runs out of attempts or the caller aborts.
 * `attempt` reports whether it already delivered output (streamed text): such a failure is not
 * retried, since the text cannot be taken back from the client.
 */
export async function withModelRetry<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy,
  signal: AbortSignal,
  deliveredOutput: () => boolean,
  onRetry?: (info: { attempt: number; delayMs: number; message: string }) => void,
): Promise<Result<T> | { ok: false; aborted: true }> {
  let last = "no attempt was made";
  let attempts = 0;
  for (let n = 1; n <= policy.maxAttempts; n++) {
    attempts = n;
    try {
      return ok(await attempt(n));
    } catch (e) {
      const failure = classifyModelError(e, signal);
      if (failure.kind === "aborted") return { ok: false, aborted: true };
      last = failure.message;
      if (failure.kind === "fatal" || deliveredOutput()) break;
      if (n === policy.maxAttempts) break;
      if (failure.retryAfterMs !== undefined && failure.retryAfterMs > policy.maxRetryAfterMs) {
        const retryAfterSeconds = Math.ceil(failure.retryAfterMs / 1000);
        return err(
          new AppError("model_unavailable", `${UNAVAILABLE}; retry after ${retryAfterSeconds} s`, {
            retryAfterSeconds,
            cause: new Error(`${last} (asked to wait ${retryAfterSeconds} s)`),
          }),
        );
      }
      const delayMs = failure.retryAfterMs ?? backoffMs(n, policy);
      onRetry?.({ attempt: n, delayMs, message: last });
      if (!(await sleep(delayMs, signal))) return { ok: false, aborted: true };
    }
  }
  const tries = attempts === 1 ? "1 attempt" : `${attempts} attempts`;
  return err(new AppError("model_unavailable", `${UNAVAILABLE} (${tries})`, { cause: new Error(last) }));
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
