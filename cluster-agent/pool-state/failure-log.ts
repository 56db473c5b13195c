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
  log?.warn({ ...ctx, error }, what);
}
