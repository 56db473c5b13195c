import { errorFromResponse, SandboxApiError } from "./errors.ts";
import { type AttachOptions, Terminal } from "./terminal.ts";

export interface ClientOptions {
  /** The edge, e.g. `https://sandbox.example.com` (a path prefix is kept). */
  baseUrl: string;
  /** A tenant JWT. */
  token: string;
  /** Sent as X-Sandbox-Region; the token's region claim, if any, wins at the edge. */
  region?: string;
  /** Retries of 429 and of 503s that mean "not served" (honouring Retry-After); 0 turns them off. Default 2. */
  retries?: number;
  /** A Retry-After longer than this is not waited for: the error is thrown. Default 30. */
  maxRetryAfterSeconds?: number;
  /** Default timeout of a call in ms, retries included (exec adds the command's own timeout). Default 60 000. */
  timeoutMs?: number;
  /** Another fetch (tests, proxies, Workers service bindings). */
  fetch?: typeof fetch;
}

/** What every call takes. */
export interface CallOptions {
  signal?: AbortSignal;
  /** The whole call, retries and (for streams) reading included. */
  timeoutMs?: number;
  /** Per call: overrides the client's. */
  retries?: number;
}

export interface RequestSpec extends CallOptions {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | undefined>;
  json?: unknown;
  body?: string | Uint8Array | ReadableStream<Uint8Array>;
  contentType?: string;
  accept?: string;
}

/**
 * 503s that guarantee the request was not served (no pod, no agent — of the region or of the
 * sandbox's cluster —, agent stopping), so a retry cannot run a command twice. `lease_lost` and
 * the 502s are not retried: the command may have run.
 */
const RETRYABLE_503 = new Set([
  "queue_timeout",
  "tunnel_busy",
  "no_agent",
  "sandbox_cluster_unavailable",
  "shutting_down",
]);

export function isRetryable(e: SandboxApiError): boolean {
  return e.status === 429 || (e.status === 503 && RETRYABLE_503.has(e.code));
}

/** A live response plus the clean-up of its timer: streams hold it until they are read to the end. */
export interface OpenResponse {
  res: Response;
  signal: AbortSignal;
  done(): void;
}

export class Transport {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly region: string | undefined;
  private readonly retries: number;
  private readonly maxRetryAfterSeconds: number;
  readonly defaultTimeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: ClientOptions) {
    if (!opts.baseUrl) throw new TypeError("baseUrl is required");
    if (!opts.token) throw new TypeError("token is required");
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.token = opts.token;
    this.region = opts.region;
    this.retries = Math.max(0, Math.floor(opts.retries ?? 2));
    this.maxRetryAfterSeconds = opts.maxRetryAfterSeconds ?? 30;
    this.defaultTimeoutMs = opts.timeoutMs ?? 60_000;
    this.fetchImpl = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  /**
   * Send, retrying what may be retried; a non-2xx answer is thrown as SandboxApiError. Every call
   * carries its own X-Request-Id: if it is aborted or times out before the answer's head arrived,
   * the edge is told to cancel it by that id (nothing else tells a server that a client waiting for
   * a response left), so its command is killed and its lease freed now, not at its timeout.
   */
  async open(spec: RequestSpec): Promise<OpenResponse> {
    const timeoutMs = spec.timeoutMs ?? this.defaultTimeoutMs;
    const clientId = crypto.randomUUID();
    let answered = false;
    const ac = new AbortController();
    ac.signal.addEventListener("abort", () => {
      if (!answered) this.cancel(clientId);
    });
    const timer = setTimeout(
      () =>
        ac.abort(
          new SandboxApiError({
            code: "client_timeout",
            message: `no complete answer within ${timeoutMs} ms`,
            status: 0,
          }),
        ),
      timeoutMs,
    );
    const onAbort = () =>
      ac.abort(
        new SandboxApiError({
          code: "request_cancelled",
          message: "the call was aborted",
          status: 0,
          cause: spec.signal?.reason,
        }),
      );
    if (spec.signal?.aborted) onAbort();
    else spec.signal?.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      spec.signal?.removeEventListener("abort", onAbort);
    };
    // A stream body can be sent once only.
    const retries = spec.body instanceof ReadableStream ? 0 : Math.max(0, spec.retries ?? this.retries);
    try {
      for (let attempt = 0; ; attempt++) {
        const res = await this.send(spec, ac.signal, clientId);
        if (res.ok) {
          answered = true;
          return { res, signal: ac.signal, done };
        }
        const error = await errorFromResponse(res);
        const wait = error.retryAfterSeconds ?? 1;
        if (attempt >= retries || !isRetryable(error) || wait > this.maxRetryAfterSeconds) throw error;
        await sleep(wait * 1000, ac.signal);
      }
    } catch (e) {
      done();
      throw asApiError(e, ac.signal);
    }
  }

  /** A call whose whole answer is JSON (or nothing, for 204). */
  async json<T>(spec: RequestSpec): Promise<T> {
    const { res, signal, done } = await this.open({ accept: "application/json", ...spec });
    try {
      if (res.status === 204) return undefined as T;
      const text = await res.text();
      try {
        return JSON.parse(text) as T;
      } catch (e) {
        throw new SandboxApiError({
          code: "invalid_response",
          message: `HTTP ${res.status} with a body that is not JSON`,
          status: res.status,
          requestId: res.headers.get("x-request-id") ?? undefined,
          cause: e,
        });
      }
    } catch (e) {
      throw asApiError(e, signal);
    } finally {
      done();
    }
  }

  /** A process's terminal WebSocket at `path` (the token goes as a subprotocol: a WebSocket has no headers). */
  terminal(path: string, opts: AttachOptions = {}): Promise<Terminal> {
    const url = new URL(`${this.baseUrl}${path}`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (opts.since !== undefined) url.searchParams.set("since", String(opts.since));
    return Terminal.open(url.toString(), this.token, opts);
  }

  /** Best effort, never awaited by the caller: a 404 means it had already finished (or never started). */
  private cancel(clientId: string): void {
    this.fetchImpl(`${this.baseUrl}/v1/requests/${encodeURIComponent(clientId)}/cancel`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(5_000),
    })
      .then((res) => res.body?.cancel())
      .catch(() => {});
  }

  private send(spec: RequestSpec, signal: AbortSignal, clientId: string): Promise<Response> {
    const url = new URL(`${this.baseUrl}${spec.path}`);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers = new Headers({ authorization: `Bearer ${this.token}`, "x-request-id": clientId });
    if (spec.accept) headers.set("accept", spec.accept);
    if (this.region) headers.set("x-sandbox-region", this.region);
    let body: BodyInit | undefined;
    if (spec.json !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(spec.json);
    } else if (spec.body !== undefined) {
      headers.set("content-type", spec.contentType ?? "application/octet-stream");
      body = spec.body as BodyInit;
    }
    // `duplex` is required by Node's fetch for a stream body and ignored elsewhere.
    const init: RequestInit & { duplex?: "half" } = { method: spec.method, headers, signal };
    if (body !== undefined) init.body = body;
    if (spec.body instanceof ReadableStream) init.duplex = "half";
    return this.fetchImpl(url, init);
  }
}

/** Whatever fetch threw, as the one error class: the abort reason if we aborted, else a network error. */
export function asApiError(e: unknown, signal: AbortSignal): SandboxApiError {
  if (e instanceof SandboxApiError) return e;
  if (signal.aborted && signal.reason instanceof SandboxApiError) return signal.reason;
  return new SandboxApiError({
    code: "network_error",
    message: e instanceof Error ? e.message : String(e),
    status: 0,
    cause: e,
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Only the call's own options, so a body field never leaks into the request spec. */
export function callOptions(opts: CallOptions): CallOptions {
  const out: CallOptions = {};
  if (opts.signal) out.signal = opts.signal;
  if (opts.timeoutMs !== undefined) out.timeoutMs = opts.timeoutMs;
  if (opts.retries !== undefined) out.retries = opts.retries;
  return out;
}
