import { Readable } from "node:stream";
import type WebSocket from "ws";
import { err, ok, type Result } from "../../shared/errors.ts";
import { TUNNEL_WS_MAX_MESSAGE_BYTES } from "../../shared/tunnel.ts";
import { EXEC_SERVER_PATHS, PORT_HEADERS_HEADER, PORT_UPSTREAM_HEADER } from "../sandbox-server/protocol.ts";
import {
  answerError,
  type ExecServerAccess,
  type ExecServerClient,
  execServerClient,
} from "./exec-server-client.ts";
import type {
  ExecTarget,
  PortMessage,
  PortRequest,
  PortResponse,
  PortSocket,
  SandboxPorts,
} from "./executor.ts";

export type HttpPortsOptions = ExecServerAccess & {
  /** Until the app's response head arrives (a slow first page of a dev server included). */
  timeoutMs?: number;
};

/** Statuses that never have a body (a Response refuses one). */
const NO_BODY = new Set([101, 204, 205, 304]);

/** `http` mode: a port's request through the pod's exec server (`/ports/<port>…`), over the one client. */
export class HttpPorts implements SandboxPorts {
  readonly #client: ExecServerClient;
  readonly #timeoutMs: number;

  constructor(o: HttpPortsOptions) {
    this.#client = execServerClient(o);
    this.#timeoutMs = o.timeoutMs ?? 60_000;
  }

  async proxy(
    target: ExecTarget,
    req: PortRequest,
    opts: { signal: AbortSignal },
  ): Promise<Result<PortResponse>> {
    const r = await this.#client.call(target, {
      method: req.method,
      path: `${EXEC_SERVER_PATHS.ports}/${req.port}${req.path}`,
      headers: { [PORT_HEADERS_HEADER]: JSON.stringify(req.headers) },
      ...(req.body !== undefined ? { body: req.body } : {}),
      signal: opts.signal,
      headTimeoutMs: this.#timeoutMs,
    });
    if (!r.ok) return r;
    const res = r.value;
    // Without the mark the exec server answered itself: its error, through the one error map.
    if (res.headers[PORT_UPSTREAM_HEADER] !== "1") return err(await answerError(res, this.#timeoutMs));
    const headers: Array<[string, string]> = [];
    for (const [name, value] of Object.entries(res.headers)) {
      if (name === PORT_UPSTREAM_HEADER || value === undefined) continue;
      for (const v of [value].flat()) headers.push([name, v]);
    }
    const status = res.statusCode ?? 502;
    if (NO_BODY.has(status) || req.method === "HEAD") {
      res.resume();
      return ok({ status, headers, body: null });
    }
    return ok({ status, headers, body: Readable.toWeb(res) as unknown as ReadableStream<Uint8Array> });
  }

  async webSocket(
    target: ExecTarget,
    req: Omit<PortRequest, "method" | "body"> & { protocols: string[] },
    opts: { signal: AbortSignal },
  ): Promise<Result<PortSocket>> {
    const r = await this.#client.upgrade(target, {
      path: `${EXEC_SERVER_PATHS.ports}/${req.port}${req.path}`,
      headers: { [PORT_HEADERS_HEADER]: JSON.stringify(req.headers) },
      protocols: req.protocols,
      // A message must fit the tunnel's: a larger one closes the socket 1009 rather than break a frame.
      maxPayload: TUNNEL_WS_MAX_MESSAGE_BYTES,
      signal: opts.signal,
      headTimeoutMs: this.#timeoutMs,
    });
    if (!r.ok) return r;
    const ws = r.value;
    opts.signal.addEventListener("abort", () => ws.close(1001, "the link's session ended"), { once: true });
    return ok(portSocket(ws));
  }
}

/** Messages the app may have queued before the tunnel reads them; past it the socket is paused. */
const QUEUED_MESSAGES = 16;

/** A `ws` socket as a PortSocket: its messages as a stream that pauses the socket when unread. */
function portSocket(ws: WebSocket): PortSocket {
  let closed = { code: 1005, reason: "" };
  const messages = new ReadableStream<PortMessage>(
    {
      start(c) {
        ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
          const bytes = Buffer.isBuffer(data)
            ? data
            : Array.isArray(data)
              ? Buffer.concat(data)
              : Buffer.from(data);
          c.enqueue(isBinary ? new Uint8Array(bytes) : bytes.toString("utf8"));
          if ((c.desiredSize ?? 1) <= 0) ws.pause();
        });
        ws.on("close", (code: number, reason: Buffer) => {
          closed = { code, reason: reason.toString("utf8") };
          try {
            c.close();
          } catch {
            // already cancelled by the reader
          }
        });
        ws.on("error", () => ws.terminate());
      },
      pull() {
        ws.resume();
      },
      cancel() {
        ws.close(1001, "the link's session ended");
      },
    },
    { highWaterMark: QUEUED_MESSAGES },
  );
  return {
    protocol: ws.protocol,
    messages,
    send: (msg) =>
      new Promise<void>((resolve, reject) => {
        ws.send(msg, { binary: typeof msg !== "string" }, (e) => (e ? reject(e) : resolve()));
      }),
    close: (code, reason) => ws.close(sendableClose(code) ? code : 1000, reason.slice(0, 120)),
    closedWith: () => closed,
  };
}

/** Codes a close frame may carry (RFC 6455 §7.4: not 1004–1006, not 1015). */
const sendableClose = (code: number) =>
  (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
