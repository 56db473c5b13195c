import type { ErrorBody, ErrorCode } from "./types.ts";

/**
 * Failures the client detects itself, before or instead of an answer from the API. They share the
 * error class with the server's codes so callers branch on `code` alone; `status` is 0 for them.
 */
export const CLIENT_ERROR_CODES = [
  "client_timeout",
  "network_error",
  "invalid_response",
  "not_a_directory",
  "is_a_directory",
] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** Server codes are open-ended (`string`): a newer server may return a code this client predates. */
export type SandboxErrorCode = ErrorCode | ClientErrorCode | (string & {});

export interface SandboxApiErrorInit {
  code: SandboxErrorCode;
  message: string;
  status: number;
  requestId?: string | undefined;
  retryAfterSeconds?: number | undefined;
  details?: ErrorBody["details"] | undefined;
  cause?: unknown;
}

/** The one error every call throws: the API's `{error:{code,…}}` envelope, or a client-side failure. */
export class SandboxApiError extends Error {
  readonly code: SandboxErrorCode;
  readonly status: number;
  readonly requestId: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly details: ErrorBody["details"] | undefined;

  constructor(init: SandboxApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "SandboxApiError";
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.details = init.details;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The envelope's `error`, checked by hand: the client carries no schema library. */
export function errorBodyOf(v: unknown): ErrorBody | undefined {
  if (!isRecord(v) || !isRecord(v.error)) return undefined;
  const e = v.error;
  if (typeof e.code !== "string" || typeof e.message !== "string") return undefined;
  return e as unknown as ErrorBody;
}

export function retryAfterOf(headers: Headers, body?: ErrorBody): number | undefined {
  const h = headers.get("retry-after");
  if (h !== null && /^\d+$/.test(h.trim())) return Number(h.trim());
  if (h !== null) {
    const at = Date.parse(h);
    if (Number.isFinite(at)) return Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }
  return body?.retryAfterSeconds;
}

/** A non-2xx response as the error it carries; a body that is not the envelope is `invalid_response`. */
export async function errorFromResponse(res: Response): Promise<SandboxApiError> {
  const text = await res.text().catch(() => "");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = errorBodyOf(parsed);
  const requestId = body?.requestId ?? res.headers.get("x-request-id") ?? undefined;
  if (!body) {
    return new SandboxApiError({
      code: "invalid_response",
      message: `HTTP ${res.status} without an error body${text ? `: ${text.slice(0, 200)}` : ""}`,
      status: res.status,
      requestId,
      retryAfterSeconds: retryAfterOf(res.headers),
    });
  }
  return new SandboxApiError({
    code: body.code,
    message: body.message,
    status: res.status,
    requestId,
    retryAfterSeconds: retryAfterOf(res.headers, body),
    details: body.details,
  });
}

/** An error event inside a stream (the status line was already 200). */
export function errorFromEvent(body: ErrorBody, status: number): SandboxApiError {
  return new SandboxApiError({
    code: body.code,
    message: body.message,
    status,
    requestId: body.requestId,
    retryAfterSeconds: body.retryAfterSeconds,
    details: body.details,
  });
}
