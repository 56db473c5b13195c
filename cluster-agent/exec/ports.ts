import { Readable } from "node:stream";
import { err, ok, type Result } from "../../shared/errors.ts";
import { EXEC_SERVER_PATHS, PORT_HEADERS_HEADER, PORT_UPSTREAM_HEADER } from "../sandbox-server/protocol.ts";
import {
  answerError,
  type ExecServerAccess,
  type ExecServerClient,
  execServerClient,
} from "./exec-server-client.ts";
import type { ExecTarget, PortRequest, PortResponse, SandboxPorts } from "./executor.ts";

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
}
