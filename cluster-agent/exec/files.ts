import { Agent, type IncomingMessage, request } from "node:http";
import { Readable } from "node:stream";
import { z } from "zod";
import { DirListingSchema, FileWriteResultSchema } from "../../shared/api.ts";
import { AppError, type ErrorCode, err, ok, type Result } from "../../shared/errors.ts";
import {
  EXEC_SERVER_PATHS,
  EXEC_SERVER_PORT,
  FENCE_HEADER,
  FILE_KIND_HEADER,
  MAX_BYTES_HEADER,
} from "../sandbox-server/protocol.ts";
import {
  abortError,
  type ExecTarget,
  type FileListing,
  type ReadResult,
  type SandboxFiles,
} from "./executor.ts";
import { podExecToken } from "./pod-token.ts";

const KNOWN: Record<string, ErrorCode> = {
  invalid_path: "invalid_path",
  file_not_found: "file_not_found",
  payload_too_large: "payload_too_large",
  stale_lease: "stale_lease",
  invalid_request: "invalid_request",
};

const ServerErrorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

/** The exec server's error body as the agent's callers should see it. */
function serverError(status: number, text: string): AppError {
  const parsed = ServerErrorSchema.safeParse(safeJson(text));
  const code = parsed.success ? KNOWN[parsed.data.error.code] : undefined;
  const message = parsed.success ? parsed.data.error.message : text.slice(0, 200);
  return code
    ? new AppError(code, message)
    : new AppError("sandbox_failed", `exec server answered ${status}: ${message}`);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function readAll(res: IncomingMessage, limit = 64 * 1024 * 1024): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) break;
    parts.push(c);
  }
  return Buffer.concat(parts).toString("utf8");
}

export interface HttpFilesOptions {
  poolToken: string;
  port?: number;
  /** Until the response head arrives (a 64 MiB write may take seconds on a loaded machine). */
  timeoutMs?: number;
  agent?: Agent;
}

/** `http` mode: the pod's exec server does the work (`/files?path=`), streaming both ways. */
export class HttpFiles implements SandboxFiles {
  readonly #o: Required<HttpFilesOptions>;

  constructor(o: HttpFilesOptions) {
    this.#o = {
      poolToken: o.poolToken,
      port: o.port ?? EXEC_SERVER_PORT,
      timeoutMs: o.timeoutMs ?? 120_000,
      agent: o.agent ?? new Agent({ keepAlive: true, maxSockets: 64 }),
    };
  }

  #call(
    target: ExecTarget,
    method: string,
    query: Record<string, string>,
    signal: AbortSignal,
    body?: ReadableStream<Uint8Array> | Uint8Array,
    extraHeaders: Record<string, string> = {},
  ): Promise<Result<IncomingMessage>> {
    if (signal.aborted) return Promise.resolve(err(abortError(signal)));
    const qs = new URLSearchParams(query).toString();
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: Result<IncomingMessage>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (!r.ok) req.destroy();
        resolve(r);
      };
      const req = request({
        host: target.podIP,
        port: this.#o.port,
        path: `${EXEC_SERVER_PATHS.files}?${qs}`,
        method,
        agent: this.#o.agent,
        headers: {
          authorization: `Bearer ${podExecToken(this.#o.poolToken, target.namespace, target.pod)}`,
          [FENCE_HEADER]: String(target.fence),
          ...(body instanceof Uint8Array ? { "content-length": String(body.byteLength) } : {}),
          ...(body && !(body instanceof Uint8Array) ? { "transfer-encoding": "chunked" } : {}),
          ...extraHeaders,
        },
      });
      const timer = setTimeout(
        () =>
          settle(
            err(new AppError("sandbox_failed", `exec server did not answer within ${this.#o.timeoutMs} ms`)),
          ),
        this.#o.timeoutMs,
      );
      const onAbort = () => settle(err(abortError(signal)));
      signal.addEventListener("abort", onAbort, { once: true });
      req.on("error", (e) =>
        settle(err(new AppError("sandbox_failed", `exec server unreachable: ${e.message}`))),
      );
      req.on("response", (res) => settle(ok(res)));
      if (body === undefined) req.end();
      else if (body instanceof Uint8Array) req.end(body);
      else {
        const src = Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>);
        src.on("error", () => req.destroy());
        src.pipe(req);
      }
    });
  }

  async write(
    target: ExecTarget,
    path: string,
    body: ReadableStream<Uint8Array> | Uint8Array,
    opts: { signal: AbortSignal; maxBytes: number },
  ): Promise<Result<{ path: string; size: number }>> {
    const r = await this.#call(target, "PUT", { path }, opts.signal, body, {
      [MAX_BYTES_HEADER]: String(opts.maxBytes),
    });
    if (!r.ok) return r;
    const text = await readAll(r.value);
    if (r.value.statusCode !== 200) return err(serverError(r.value.statusCode ?? 0, text));
    const parsed = FileWriteResultSchema.safeParse(safeJson(text));
    return parsed.success
      ? ok(parsed.data)
      : err(new AppError("sandbox_failed", "exec server sent a bad write result"));
  }

  async read(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<ReadResult>> {
    const r = await this.#call(target, "GET", { path }, opts.signal);
    if (!r.ok) return r;
    const res = r.value;
    if (res.statusCode !== 200) return err(serverError(res.statusCode ?? 0, await readAll(res)));
    if (res.headers[FILE_KIND_HEADER] === "dir") {
      const parsed = DirListingSchema.safeParse(safeJson(await readAll(res)));
      return parsed.success
        ? ok({ kind: "dir", entries: parsed.data.entries })
        : err(new AppError("sandbox_failed", "exec server sent a bad listing"));
    }
    const size = Number(res.headers["content-length"] ?? "0");
    opts.signal.addEventListener("abort", () => res.destroy(), { once: true });
    const body = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
    return ok({ kind: "file", size, body });
  }

  async list(
    target: ExecTarget,
    path: string,
    opts: { signal: AbortSignal; recursive?: boolean; limit?: number },
  ): Promise<Result<FileListing>> {
    const q: Record<string, string> = { path };
    if (opts.recursive) q.recursive = "1";
    if (opts.limit !== undefined) q.limit = String(opts.limit);
    const r = await this.#call(target, "GET", q, opts.signal);
    if (!r.ok) return r;
    const res = r.value;
    if (res.statusCode !== 200) return err(serverError(res.statusCode ?? 0, await readAll(res)));
    if (res.headers[FILE_KIND_HEADER] !== "dir") {
      res.destroy();
      return err(new AppError("invalid_path", `${path}: not a directory`));
    }
    const parsed = DirListingSchema.safeParse(safeJson(await readAll(res)));
    return parsed.success
      ? ok({ entries: parsed.data.entries, truncated: parsed.data.truncated ?? false })
      : err(new AppError("sandbox_failed", "exec server sent a bad listing"));
  }

  async remove(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<void>> {
    const r = await this.#call(target, "DELETE", { path }, opts.signal);
    if (!r.ok) return r;
    const text = await readAll(r.value);
    return r.value.statusCode === 204 ? ok(undefined) : err(serverError(r.value.statusCode ?? 0, text));
  }
}
