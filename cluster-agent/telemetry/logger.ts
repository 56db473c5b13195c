import { AsyncLocalStorage } from "node:async_hooks";
import { type DestinationStream, type Logger, pino } from "pino";

/**
 * The agent's structured JSON logs. Two rules: every line written while serving a request carries
 * its `requestId`, and no credential ever reaches a log line.
 *
 * requestId: handlers log through `requestLogger(logger, { requestId })` (a pino child), and code
 * that only has the root logger still gets the id from `withRequestContext` (AsyncLocalStorage,
 * added by a mixin unless the line or child already carries one).
 *
 * Credentials: pino's `redact` censors the known fields (REDACT_PATHS); on top of that every key
 * that looks sensitive at any depth, and bearer tokens / JWTs / `token=` inside any string
 * (messages included), are scrubbed, because a path list cannot foresee every shape.
 */

export const REDACTED = "[redacted]";

/** Field paths pino censors (fast-redact syntax: `*` is one level). */
export const REDACT_PATHS = [
  "authorization",
  "Authorization",
  "*.authorization",
  "*.Authorization",
  "headers.authorization",
  "headers.Authorization",
  "*.headers.authorization",
  "*.headers.Authorization",
  'headers["x-relay-signature"]',
  '*.headers["x-relay-signature"]',
  "headers.cookie",
  "*.headers.cookie",
  'headers["set-cookie"]',
  '*.headers["set-cookie"]',
  "token",
  "*.token",
  "poolToken",
  "*.poolToken",
  "accessToken",
  "*.accessToken",
  "refreshToken",
  "*.refreshToken",
  "apiKey",
  "*.apiKey",
  "password",
  "*.password",
  "secret",
  "*.secret",
  "jwt",
  "*.jwt",
];

const SENSITIVE_KEY =
  /^(authorization|proxy-authorization|cookie|set-cookie|x-relay-signature|password|secret|jwt|(.*[-_]?)?(token|api[-_]?key|secret))$/i;

const STRING_PATTERNS: Array<[RegExp, string]> = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, `$1 ${REDACTED}`],
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, REDACTED],
  [/([?&#;](?:token|access_token|id_token|api_key|apikey)=)[^&\s#"']+/gi, `$1${REDACTED}`],
];

/** Credentials inside free text: bearer/basic credentials, JWTs, `token=` parameters. */
export function scrubString(s: string): string {
  let out = s;
  for (const [re, by] of STRING_PATTERNS) out = out.replace(re, by);
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** A scrubbed copy of plain objects/arrays; other values (errors, buffers) pass through unchanged. */
export function scrubValue(v: unknown, depth = 0): unknown {
  if (typeof v === "string") return scrubString(v);
  if (depth > 8) return v;
  if (Array.isArray(v)) return v.map((x) => scrubValue(x, depth + 1));
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v))
    out[k] = SENSITIVE_KEY.test(k) ? REDACTED : scrubValue(x, depth + 1);
  return out;
}

export interface RequestContext {
  requestId: string;
  tenant?: string;
}

const requestContext = new AsyncLocalStorage<RequestContext>();

/** Run `fn` (and everything it awaits) as part of a request: root-logger lines get its requestId. */
export function withRequestContext<T>(ctx: RequestContext, fn: () => T): T {
  return requestContext.run(ctx, fn);
}

export interface LoggerOptions {
  level?: string;
  /** Where lines go (default stdout). Tests pass a stream that collects lines. */
  destination?: DestinationStream;
  /** Fields on every line, e.g. { agentId, region }. */
  base?: Record<string, unknown>;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    level: opts.level ?? "info",
    base: { service: "cluster-agent", ...opts.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: "msg",
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    formatters: {
      level: (label: string) => ({ level: label }),
      log: (obj: Record<string, unknown>) => scrubValue(obj) as Record<string, unknown>,
      bindings: (b: Record<string, unknown>) => scrubValue(b) as Record<string, unknown>,
    },
    hooks: {
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        method.apply(
          this,
          args.map((a) => (typeof a === "string" ? scrubString(a) : a)),
        );
      },
    },
    mixin(merge: object, _level: number, logger: Logger): Record<string, unknown> {
      const ctx = requestContext.getStore();
      if (!ctx || "requestId" in merge || "requestId" in logger.bindings()) return {};
      return ctx.tenant === undefined
        ? { requestId: ctx.requestId }
        : { requestId: ctx.requestId, tenant: ctx.tenant };
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** The logger for one request: every line it writes carries `requestId` (and tenant, if known). */
export function requestLogger(logger: Logger, ctx: RequestContext & Record<string, unknown>): Logger {
  return logger.child(ctx);
}
