import { z } from "zod";
import { fieldIssues } from "./field-hints.ts";

/**
 * Every failure the public API can return, with its HTTP status. Callers branch on `code`;
 * `message` is for humans and may change. Adding a code is fine; renaming one is a breaking change.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_json: 400,
  /** A sandbox file path that resolves outside /workspace (`..`, a symlink, an absolute path elsewhere). */
  invalid_path: 400,
  unauthenticated: 401,
  invalid_token: 401,
  token_expired: 401,
  missing_tenant: 401,
  relay_signature_invalid: 401,
  relay_expired: 401,
  relay_replayed: 401,
  /** An agent's tunnel login token (its jti) was already used. */
  token_replayed: 401,
  insufficient_scope: 403,
  not_found: 404,
  /** Unknown, malformed, deleted or expired sandbox id, or another tenant's: never a 403. */
  sandbox_not_found: 404,
  file_not_found: 404,
  /** POST /v1/requests/{id}/cancel found no in-flight request of this tenant with that id. */
  request_not_found: 404,
  /** No process with that pid in this sandbox (never started, deleted, forgotten after exiting, or another sandbox's). */
  process_not_found: 404,
  /** No secret of that name for this tenant (never stored, deleted, or another tenant's). */
  secret_not_found: 404,
  /** The tenant already has the most secrets a tenant may store (MAX_SECRETS_PER_TENANT). */
  secret_limit: 429,
  /**
   * A port link that is not (or no longer) valid: forged, malformed, expired, revoked, of a deleted
   * sandbox, or another tenant's. One code for all, so a probe learns nothing about the target.
   */
  link_not_found: 404,
  method_not_allowed: 405,
  /**
   * The sandbox's pod (or a one-shot exec's) was evicted, OOM-killed or failed: the message carries
   * the kubelet's reason and message. Answered to the call in flight and, for a while after, instead
   * of sandbox_not_found. Gone for good: retrying the same sandbox cannot succeed.
   */
  sandbox_evicted: 410,
  /** A dev/test edge (local or committed keys) asked under a non-local hostname: it answers nothing. */
  host_not_allowed: 421,
  /** A WebSocket route (a terminal) asked without a WebSocket upgrade. */
  websocket_required: 426,
  /** The exec server's fence refusal; internal: callers get lease_lost (requests/leased-sandbox.ts). */
  stale_lease: 409,
  /**
   * A named create found the tenant's live sandbox of that name with another `network` or
   * `secrets` than the request asks for: nothing was changed (get-or-create never widens a policy).
   */
  sandbox_name_conflict: 409,
  /** stdin or a signal to a process that has exited; the error carries its `exitCode` and `signal`. */
  process_exited: 409,
  /** stdin after `?eof=1` closed it. */
  stdin_closed: 409,
  /** A resize of a process started without `tty: true`. */
  not_a_tty: 409,
  /** The process could not be started (program not found or not executable). */
  spawn_failed: 400,
  /** A port link to a port outside 1–65535 or to the exec server's own port. */
  port_not_allowed: 400,
  payload_too_large: 413,
  /** edit_file: old_string is not in the file / occurs more than once without replace_all / equals new_string. */
  edit_not_found: 422,
  edit_not_unique: 422,
  edit_no_change: 422,
  unsupported_media_type: 415,
  rate_limited: 429,
  /** The tenant already has TENANT_MAX_SANDBOXES live sandboxes. */
  sandbox_limit: 429,
  /** The caller's own tenant held TENANT_MAX_LEASES pods for its whole wait (only when that cap is set). */
  tenant_lease_limit: 429,
  /** As many processes run in the sandbox as its exec server allows. */
  process_limit: 429,
  /** The sandbox's output rings would exceed their byte budget (even after forgetting exited processes). */
  ring_limit: 429,
  /** The sandbox already has as many open port links as allowed (revoke one or let it expire). */
  link_limit: 429,
  internal: 500,
  /** The agent runs commands over pods/exec (EXEC_MODE=api), which cannot keep a process (processes). */
  not_supported_in_api_mode: 501,
  /**
   * The agent's pods run an exec server written to pydantic-ai-backends' http contract
   * (EXEC_MODE=pydantic-http), which runs one command per request and keeps nothing (processes).
   */
  not_supported_in_contract_mode: 501,
  agent_unavailable: 502,
  tunnel_closed: 502,
  sandbox_failed: 502,
  /** Nothing listens on the linked port in the sandbox (yet): retry once the server is up. */
  port_not_listening: 502,
  model_unavailable: 502,
  no_agent: 503,
  /** No agent of the cluster that holds the sandbox is connected; never sent to another cluster. */
  sandbox_cluster_unavailable: 503,
  queue_timeout: 503,
  /** The region's TunnelDO is at its budget for buffered body bytes: retry after Retry-After. */
  tunnel_busy: 503,
  lease_lost: 503,
  shutting_down: 503,
  /** The process is not reading its stdin and the bytes already queued for it reached the limit (retry). */
  stdin_busy: 503,
  model_not_configured: 503,
  relay_timeout: 504,
  /** The caller went away (abort signal) before it was served; nginx's 499 "client closed request". */
  request_cancelled: 499,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];
export const ErrorCodeSchema = z.enum(ERROR_CODES);

export const ErrorBodySchema = z.object({
  code: ErrorCodeSchema,
  message: z.string(),
  requestId: z.string(),
  /** Seconds, for 429/503: mirrors the Retry-After header. */
  retryAfterSeconds: z.number().int().nonnegative().optional(),
  /** Validation details (zod issues flattened to path + message). */
  details: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  /** `process_exited` only: how the process ended (null exit code: killed by `signal` or its timeout). */
  exitCode: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
});
export const ErrorEnvelopeSchema = z.object({ error: ErrorBodySchema });
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
export type ErrorEnvelope = z.infer<typeof ErrorEnvelopeSchema>;

export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}

/** An error as a value: what modules return (or throw, at the edges of a framework) when callers branch on it. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;
  readonly details: ErrorBody["details"];
  /** Response headers that belong with this error (e.g. RateLimit-* on a 429). */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** `process_exited`: how the process ended. */
  readonly exit: { exitCode: number | null; signal: string | null } | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      retryAfterSeconds?: number;
      details?: ErrorBody["details"];
      headers?: Record<string, string>;
      cause?: unknown;
      exit?: { exitCode: number | null; signal: string | null };
    } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "AppError";
    this.code = code;
    this.retryAfterSeconds = opts.retryAfterSeconds;
    this.details = opts.details;
    this.headers = opts.headers;
    this.exit = opts.exit;
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
  toBody(requestId: string): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message, requestId };
    if (this.retryAfterSeconds !== undefined) body.retryAfterSeconds = this.retryAfterSeconds;
    if (this.details !== undefined) body.details = this.details;
    if (this.exit !== undefined) Object.assign(body, this.exit);
    return body;
  }
}

export type Result<T, E = AppError> = { ok: true; value: T } | { ok: false; error: E };
export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const err = <E>(error: E): Result<never, E> => ({ ok: false, error });

/**
 * Turn a zod failure into the `details` list of an `invalid_request` error: unknown keys first,
 * each with the closest known key of `schema` when one is near.
 */
export function zodDetails(error: z.ZodError, schema?: z.ZodType): NonNullable<ErrorBody["details"]> {
  return fieldIssues(schema, error);
}

/** The message of a validation failure: the offending field first, then what was being parsed. */
export function validationMessage(what: string, details: NonNullable<ErrorBody["details"]>): string {
  const first = details[0];
  if (!first) return `invalid ${what}`;
  if (first.path === "(root)") return `invalid ${what}: ${first.message}`;
  return `${first.path}: ${first.message} (invalid ${what})`;
}

/** Parse `input` with `schema`; a failure becomes an `invalid_request` AppError naming every bad field. */
export function parseOrError<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what: string,
): Result<z.infer<S>> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return ok(parsed.data);
  const details = zodDetails(parsed.error, schema);
  return err(new AppError("invalid_request", validationMessage(what, details), { details }));
}

/** The shared error envelope as a Response: every failure either side returns over HTTP goes through here. */
export function errorResponse(error: AppError, requestId: string, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  for (const [k, v] of Object.entries(error.headers ?? {})) h.set(k, v);
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
