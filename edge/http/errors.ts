import { AppError, type ErrorEnvelope } from "../../shared/errors.ts";

/** The shared error envelope as a Response; every failure the edge returns goes through here. */
export function errorResponse(error: AppError, requestId: string, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  for (const [k, v] of Object.entries(extraHeaders.get(error) ?? {})) h.set(k, v);
  h.set("Content-Type", "application/json; charset=utf-8");
  h.set("X-Request-Id", requestId);
  if (error.retryAfterSeconds !== undefined) h.set("Retry-After", String(error.retryAfterSeconds));
  const body: ErrorEnvelope = { error: error.toBody(requestId) };
  return new Response(JSON.stringify(body), { status: error.status, headers: h });
}

/** Anything thrown becomes an AppError; unknown errors are `internal` and say nothing more. */
export function toAppError(e: unknown): AppError {
  if (e instanceof AppError) return e;
  return new AppError("internal", "internal error", { cause: e });
}

/** A copy of `res` whose headers can be changed (fetch/DO responses have immutable headers). */
export function mutable(res: Response): Response {
  return new Response(res.body, {
    status: res.status,
    statusText: res.statusText,
    headers: new Headers(res.headers),
  });
}

const extraHeaders = new WeakMap<AppError, Record<string, string>>();

/** Attach response headers to an error (e.g. RateLimit-* on a 429) before throwing it. */
export function withHeaders(error: AppError, headers: Record<string, string>): AppError {
  extraHeaders.set(error, headers);
  return error;
}
