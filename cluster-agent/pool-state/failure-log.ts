import { k8sFailure } from "../k8s/errors.ts";

/**
 * Where the lease core and the pool controller report an error they catch and do not rethrow
 * (a failed delete, a watch that dropped): one warn line with the request id when there is one.
 */
export interface FailureLog {
  /** A pino logger fits. */
  warn(obj: object, msg: string): void;
}

export function logFailure(
  log: FailureLog | undefined,
  what: string,
  e: unknown,
  ctx: { requestId?: string | undefined; pod?: string | undefined } = {},
): void {
  const error = e instanceof Error ? e.message : String(e);
  // An AppError returned to a caller says it in our words; what the API server said is its cause.
  const cause = e instanceof Error && e.cause !== undefined ? describe(e.cause) : undefined;
  log?.warn({ ...ctx, error, ...(cause !== undefined ? { cause } : {}) }, what);
}

/** The API server's Status in one readable line (its message unescaped), or any other error's message. */
function describe(c: unknown): string {
  const f = k8sFailure(c);
  return f.code ? `${f.code} ${f.reason ?? ""}: ${f.message}` : f.message;
}
