import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { DirListingSchema, FileWriteResultSchema, SANDBOX_LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { EXEC_SERVER_PATHS, FILE_KIND_HEADER, MAX_BYTES_HEADER } from "../sandbox-server/protocol.ts";
import {
  answerError,
  type ExecServerAccess,
  type ExecServerCall,
  type ExecServerClient,
  execServerClient,
  readAnswer,
} from "./exec-server-client.ts";
import type { ExecTarget, FileListing, ListOptions, ReadResult, SandboxFiles } from "./executor.ts";

export type HttpFilesOptions = ExecServerAccess & {
  /** Until the response head arrives, and again to read a JSON answer (a 64 MiB write may take seconds on a loaded machine). */
  timeoutMs?: number;
};

/**
 * A listing page is the largest JSON answer of /files: the exec server caps it at
 * SANDBOX_LIMITS.maxListBytes of entries; the rest of this bound is the envelope's room.
 */
const JSON_LIMIT_BYTES = SANDBOX_LIMITS.maxListBytes + 64 * 1024;

/** `http` mode: the pod's exec server does the work (`/files?path=`), streaming both ways. */
export class HttpFiles implements SandboxFiles {
  readonly #client: ExecServerClient;
  readonly #timeoutMs: number;

  constructor(o: HttpFilesOptions) {
    this.#client = execServerClient(o);
    this.#timeoutMs = o.timeoutMs ?? 120_000;
  }

  #call(
    target: ExecTarget,
    method: ExecServerCall["method"],
    query: Record<string, string>,
    signal: AbortSignal,
    body?: ReadableStream<Uint8Array> | Uint8Array,
    headers: Record<string, string> = {},
  ): Promise<Result<IncomingMessage>> {
    return this.#client.call(target, {
      method,
      path: EXEC_SERVER_PATHS.files,
      query,
      headers,
      ...(body !== undefined ? { body } : {}),
      signal,
      headTimeoutMs: this.#timeoutMs,
    });
  }

  /** The whole JSON (or error) answer, bounded in size and time. */
  #json(res: IncomingMessage): Promise<Result<unknown>> {
    return readAnswer(res, this.#timeoutMs, JSON_LIMIT_BYTES);
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
    const json = await this.#json(r.value);
    if (!json.ok) return json;
    const parsed = FileWriteResultSchema.safeParse(json.value);
    return parsed.success
      ? ok(parsed.data)
      : err(new AppError("sandbox_failed", "exec server sent a bad write result"));
  }

  async read(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<ReadResult>> {
    const r = await this.#call(target, "GET", { path }, opts.signal);
    if (!r.ok) return r;
    const res = r.value;
    if (res.statusCode !== 200) return this.#failed(res);
    if (res.headers[FILE_KIND_HEADER] === "dir") {
      const page = await this.#page(res);
      return page.ok ? ok({ kind: "dir", ...page.value }) : page;
    }
    const size = Number(res.headers["content-length"] ?? "0");
    // An abort of opts.signal destroys the response (the client's call), ending this stream.
    const body = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
    return ok({ kind: "file", size, body });
  }

  async list(
    target: ExecTarget,
    path: string,
    opts: ListOptions & { signal: AbortSignal },
  ): Promise<Result<FileListing>> {
    const q: Record<string, string> = { path };
    if (opts.recursive) q.recursive = "1";
    if (opts.limit !== undefined) q.limit = String(opts.limit);
    if (opts.after !== undefined) q.after = opts.after;
    const r = await this.#call(target, "GET", q, opts.signal);
    if (!r.ok) return r;
    const res = r.value;
    if (res.statusCode !== 200) return this.#failed(res);
    if (res.headers[FILE_KIND_HEADER] !== "dir") {
      res.destroy();
      return err(new AppError("invalid_path", `${path}: not a directory`));
    }
    return this.#page(res);
  }

  /** A listing page's JSON, bounded (JSON_LIMIT_BYTES) and checked. */
  async #page(res: IncomingMessage): Promise<Result<FileListing>> {
    const json = await this.#json(res);
    if (!json.ok) return json;
    const parsed = DirListingSchema.safeParse(json.value);
    if (!parsed.success) return err(new AppError("sandbox_failed", "exec server sent a bad listing"));
    const { entries, truncated, next } = parsed.data;
    return ok({ entries, truncated: truncated ?? false, ...(next !== undefined ? { next } : {}) });
  }

  async remove(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<void>> {
    const r = await this.#call(target, "DELETE", { path }, opts.signal);
    if (!r.ok) return r;
    if (r.value.statusCode === 204) {
      r.value.resume();
      return ok(undefined);
    }
    return this.#failed(r.value);
  }

  /** A non-success answer as the one error map reads it. */
  async #failed(res: IncomingMessage): Promise<Result<never>> {
    return err(await answerError(res, this.#timeoutMs));
  }
}
