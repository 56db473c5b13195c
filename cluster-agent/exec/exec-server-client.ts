import { Agent, type ClientRequest, type IncomingMessage, request } from "node:http";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import WebSocket from "ws";
import { z } from "zod";
import { AppError, type ErrorCode, err, ok, type Result } from "../../shared/errors.ts";
import { EXEC_SERVER_PATHS, EXEC_SERVER_PORT, FENCE_HEADER } from "../sandbox-server/protocol.ts";
import { abortError, type ExecTarget } from "./executor.ts";
import { podExecToken } from "./pod-token.ts";

export interface ExecServerClientOptions {
  /** The agent's pool token: each pod's exec token is derived from it (pod-token.ts). */
  poolToken: string;
  /** The exec server's port in every sandbox pod. */
  port?: number;
  /** The keep-alive pool (Node pools per host:port, so one pool per pod). */
  agent?: Agent;
  /**
   * Which server the pods run: ours (`Authorization: Bearer`, the fencing token) or one written to
   * pydantic-ai-backends' http contract (`X-Sandbox-Token`; it knows no fencing). Default ours.
   */
  contract?: ExecServerContract;
}

export type ExecServerContract = "pi-sandbox" | "pydantic-http";

/** pydantic-ai-backends' header for the pod's token (its KubernetesPodSandbox, mode="http"). */
export const CONTRACT_TOKEN_HEADER = "x-sandbox-token";

/** A caller of the exec server either shares the agent's client or has one made from options. */
export type ExecServerAccess = { client: ExecServerClient } | ExecServerClientOptions;

export function execServerClient(o: ExecServerAccess): ExecServerClient {
  return "client" in o ? o.client : new ExecServerClient(o);
}

export interface ExecServerCall {
  /** GET, POST, PUT, DELETE; any method for a proxied port request. */
  method: string;
  /** One of EXEC_SERVER_PATHS (under `ports`: the port and the app's path). */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string | Uint8Array | ReadableStream<Uint8Array>;
  /** Aborts the call; after the head arrived it destroys the response (the server sees the close). */
  signal?: AbortSignal;
  /** Until the response head arrives. */
  headTimeoutMs: number;
}

/** A warm-up that takes longer than this is not worth keeping: the first call connects itself. */
const WARM_TIMEOUT_MS = 2_000;
/** Error bodies and small JSON answers; larger is not an answer of this server. */
const TEXT_LIMIT_BYTES = 64 * 1024;

/**
 * The one client of the sandbox pod's exec server: commands (http-executor.ts), files (files.ts)
 * and scrub (scrubber.ts) all go through `call()`, so they share one keep-alive pool per pod (a
 * `warm()` serves the first call of any kind), one error map (`serverError`) and one abort error.
 */
export class ExecServerClient {
  readonly #token: string;
  readonly #port: number;
  readonly #agent: Agent;
  readonly #contract: ExecServerContract;

  constructor(o: ExecServerClientOptions) {
    this.#token = o.poolToken;
    this.#contract = o.contract ?? "pi-sandbox";
    this.#port = o.port ?? EXEC_SERVER_PORT;
    this.#agent = o.agent ?? new Agent({ keepAlive: true, maxSockets: 256 });
  }

  /** The exec server's port in every pod (no port link may reach it). */
  get port(): number {
    return this.#port;
  }

  /** GET /health through the pool: the socket stays there for the pod's first call. */
  warm(podIP: string): void {
    if (!podIP) return;
    const req = request(
      { host: podIP, port: this.#port, path: EXEC_SERVER_PATHS.health, method: "GET", agent: this.#agent },
      (res) => res.resume(),
    );
    req.setTimeout(WARM_TIMEOUT_MS, () => req.destroy());
    // A pod that is not reachable yet is simply not warmed; its first call connects itself.
    req.on("error", () => {});
    req.end();
  }

  /** One request to the pod's exec server, authenticated and fenced; resolves at the response head. */
  call(target: ExecTarget, c: ExecServerCall): Promise<Result<IncomingMessage>> {
    const signal = c.signal;
    if (signal?.aborted) return Promise.resolve(err(abortError(signal)));
    const what = `${c.method} ${c.path} on ${target.pod}`;
    // Node's http.request sends a request with host "" to localhost: never guess an address.
    if (!target.podIP)
      return Promise.resolve(err(new AppError("sandbox_failed", `${what}: the pod has no IP`)));
    const qs = c.query ? `?${new URLSearchParams(c.query).toString()}` : "";
    const body = typeof c.body === "string" ? Buffer.from(c.body) : c.body;
    const streamed = body !== undefined && !(body instanceof Uint8Array);
    return new Promise((resolve) => {
      let settled = false;
      let req: ClientRequest | undefined;
      const settle = (r: Result<IncomingMessage>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!r.ok) {
          signal?.removeEventListener("abort", onAbort);
          req?.destroy();
        }
        resolve(r);
      };
      const onAbort = () => {
        // Before the head: the call fails with the abort reason. After: the caller is reading
        // the body; closing the connection ends it (and tells the server to stop the work).
        if (!settled) settle(err(abortError(signal as AbortSignal)));
        else req?.destroy();
      };
      const send = (firstTry: boolean) => {
        const r = request({
          host: target.podIP,
          port: this.#port,
          path: `${c.path}${qs}`,
          method: c.method,
          agent: this.#agent,
          headers: {
            ...this.#auth(target),
            ...(body instanceof Uint8Array ? { "content-length": String(body.byteLength) } : {}),
            ...(streamed ? { "transfer-encoding": "chunked" } : {}),
            ...c.headers,
          },
        });
        req = r;
        let answered = false;
        r.on("error", (e: NodeJS.ErrnoException) => {
          // A kept-alive socket the server closed while idle: the request never reached it, so
          // sending it again cannot run anything twice (Node's documented retry case). A streamed
          // body cannot be sent twice.
          if (firstTry && !answered && !settled && !streamed && r.reusedSocket && e.code === "ECONNRESET")
            send(false);
          // The socket error names the pod's address: the cause (logged by the pipeline), not the answer.
          else settle(err(new AppError("sandbox_failed", `${what} failed`, { cause: e })));
        });
        r.on("response", (res) => {
          answered = true;
          res.on("close", () => signal?.removeEventListener("abort", onAbort));
          settle(ok(res));
        });
        if (body === undefined) r.end();
        else if (body instanceof Uint8Array) r.end(body);
        else {
          const src = Readable.fromWeb(body as WebReadableStream<Uint8Array>);
          src.on("error", () => r.destroy());
          src.pipe(r);
        }
      };
      const timer = setTimeout(
        () => settle(err(new AppError("sandbox_failed", `${what}: no answer within ${c.headTimeoutMs} ms`))),
        c.headTimeoutMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      send(true);
    });
  }

  /** Our server checks a bearer token and the fence; a pydantic-http server only its own header. */
  #auth(target: ExecTarget): Record<string, string> {
    const token = podExecToken(this.#token, target.namespace, target.pod);
    return this.#contract === "pydantic-http"
      ? { [CONTRACT_TOKEN_HEADER]: token }
      : { authorization: `Bearer ${token}`, [FENCE_HEADER]: String(target.fence) };
  }
  /**
   * A WebSocket through the pod's exec server, open once the app accepted the handshake: the
   * server pipes the two sockets, so this client and the app speak the protocol end to end. A
   * refusal (the server's or the app's own non-101 answer) comes through the one error map.
   */
  upgrade(target: ExecTarget, c: ExecServerUpgrade): Promise<Result<WebSocket>> {
    const signal = c.signal;
    if (signal?.aborted) return Promise.resolve(err(abortError(signal)));
    const what = `upgrade ${c.path} on ${target.pod}`;
    if (!target.podIP)
      return Promise.resolve(err(new AppError("sandbox_failed", `${what}: the pod has no IP`)));
    return new Promise((resolve) => {
      const ws = new WebSocket(`ws://${target.podIP}:${this.#port}${c.path}`, c.protocols ?? [], {
        headers: { ...this.#auth(target), ...c.headers },
        handshakeTimeout: c.headTimeoutMs,
        maxPayload: c.maxPayload,
        // The app's own choice of extensions is not ours to make: frames pass as the app sends them.
        perMessageDeflate: false,
      });
      let settled = false;
      const settle = (r: Result<WebSocket>) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        if (!r.ok) ws.terminate();
        resolve(r);
      };
      const onAbort = () => settle(err(abortError(signal as AbortSignal)));
      signal?.addEventListener("abort", onAbort, { once: true });
      ws.once("open", () => settle(ok(ws)));
      ws.once("unexpected-response", (_req, res) => {
        void answerError(res, c.headTimeoutMs).then((e) => {
          // The app's own non-101 answer (no error envelope of ours): it did not accept the upgrade.
          settle(
            err(
              e.code === "sandbox_failed"
                ? new AppError(
                    "port_not_listening",
                    `the server on the port refused the WebSocket (${res.statusCode ?? 0})`,
                    { retryAfterSeconds: 1 },
                  )
                : e,
            ),
          );
        });
      });
      ws.once("error", (e) => settle(err(new AppError("sandbox_failed", `${what} failed`, { cause: e }))));
    });
  }
}

/** A WebSocket upgrade to the exec server (a port link's): the same token, fence and error map as `call()`. */
export interface ExecServerUpgrade {
  /** Under EXEC_SERVER_PATHS.ports: the port and the app's path. */
  path: string;
  headers?: Record<string, string>;
  /** Subprotocols offered to the app. */
  protocols?: string[];
  /** Largest message either way (a larger one closes the socket 1009). */
  maxPayload: number;
  signal?: AbortSignal;
  /** Until the handshake completes. */
  headTimeoutMs: number;
}

/** The exec server's error codes that mean something to the agent's callers, as they see them. */
const KNOWN: Record<string, ErrorCode> = {
  // The pipeline (requests/leased-sandbox.ts) turns this into lease_lost before any caller sees it.
  stale_lease: "stale_lease",
  invalid_request: "invalid_request",
  payload_too_large: "payload_too_large",
  invalid_path: "invalid_path",
  file_not_found: "file_not_found",
  // Processes: the caller's to see, with the same statuses as the exec server's.
  process_not_found: "process_not_found",
  process_exited: "process_exited",
  stdin_closed: "stdin_closed",
  stdin_busy: "stdin_busy",
  process_limit: "process_limit",
  ring_limit: "ring_limit",
  spawn_failed: "spawn_failed",
  not_a_tty: "not_a_tty",
  // Port links: the server's words about the linked port.
  port_not_listening: "port_not_listening",
  port_not_allowed: "port_not_allowed",
};

const ServerErrorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    exitCode: z.number().int().nullable().optional(),
    signal: z.string().nullable().optional(),
  }),
});

/**
 * The one error map of the exec server's answers. Anything it does not name (401: the agent and
 * the pool disagree on the token) makes the sandbox unusable, not the caller wrong: sandbox_failed.
 */
function serverError(status: number, text: string): AppError {
  const parsed = ServerErrorSchema.safeParse(safeJson(text));
  if (!parsed.success) {
    return new AppError("sandbox_failed", `exec server answered ${status}: ${text.slice(0, 500)}`);
  }
  const { code, message, exitCode, signal } = parsed.data.error;
  const mapped = KNOWN[code];
  const exit =
    code === "process_exited" ? { exit: { exitCode: exitCode ?? null, signal: signal ?? null } } : {};
  // stdin_busy is the process's own backlog draining: worth a retry a second later.
  // port_not_listening: a server that is still starting.
  const retry = code === "stdin_busy" || code === "port_not_listening" ? { retryAfterSeconds: 1 } : {};
  return mapped
    ? new AppError(mapped, message, { ...exit, ...retry })
    : new AppError("sandbox_failed", `exec server answered ${status} ${code}: ${message}`);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A whole (small) answer body, bounded in size and time; more than `limit` bytes is an error. */
function readText(
  res: IncomingMessage,
  timeoutMs: number,
  limit = TEXT_LIMIT_BYTES,
): Promise<Result<string>> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    let done = false;
    const finish = (r: Result<string>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!r.ok) res.destroy();
      resolve(r);
    };
    const broke = (why: string) => finish(err(new AppError("sandbox_failed", `exec server answer ${why}`)));
    const timer = setTimeout(() => broke(`not read within ${timeoutMs} ms`), timeoutMs);
    res.on("data", (c: Buffer) => {
      n += c.length;
      if (n > limit) broke(`over ${limit} bytes`);
      else parts.push(c);
    });
    res.on("end", () => finish(ok(Buffer.concat(parts).toString("utf8"))));
    res.on("error", (e) => broke(`broke: ${e.message}`));
    res.on("close", () => {
      if (!res.complete) broke("broke before its end");
    });
  });
}

/** A successful answer's JSON (undefined when it is not JSON); any other status through the one error map. */
export async function readAnswer(
  res: IncomingMessage,
  timeoutMs: number,
  limit = TEXT_LIMIT_BYTES,
): Promise<Result<unknown>> {
  const text = await readText(res, timeoutMs, limit);
  if (!text.ok) return text;
  const status = res.statusCode ?? 0;
  return status >= 200 && status < 300 ? ok(safeJson(text.value)) : err(serverError(status, text.value));
}

/** The error a non-success answer stands for (the caller already knows it is not the one it wanted). */
export async function answerError(res: IncomingMessage, timeoutMs: number): Promise<AppError> {
  const a = await readAnswer(res, timeoutMs);
  return a.ok
    ? new AppError("sandbox_failed", `exec server answered ${res.statusCode ?? 0} unexpectedly`)
    : a.error;
}
