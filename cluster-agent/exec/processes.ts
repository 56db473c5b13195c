import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type { z } from "zod";
import {
  type ProcessInfo,
  ProcessInfoSchema,
  ProcessListSchema,
  type ProcessOutput,
  ProcessOutputSchema,
  type ProcessStartRequest,
  type StdinResult,
  StdinResultSchema,
} from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { EXEC_SERVER_PATHS, type ProcessStartBody } from "../sandbox-server/protocol.ts";
import {
  answerError,
  type ExecServerAccess,
  type ExecServerCall,
  type ExecServerClient,
  execServerClient,
  readAnswer,
} from "./exec-server-client.ts";
import type { ExecTarget, ProcessOutputRequest, SandboxProcesses } from "./executor.ts";

export type HttpProcessesOptions = ExecServerAccess & {
  /** Until the response head arrives, and again to read a JSON answer (a waiting read adds its wait). */
  timeoutMs?: number;
};

/** An output read answers at most 1 MiB, base64 in JSON. */
const OUTPUT_JSON_LIMIT = 2 * 1024 * 1024;
/** A list of up to PROCESS_LIMIT + PROCESS_KEEP_EXITED processes, each with its argv. */
const LIST_JSON_LIMIT = 16 * 1024 * 1024;

/** `http` mode: the pod's exec server keeps the processes (`/processes…`); every call through the one client. */
export class HttpProcesses implements SandboxProcesses {
  readonly #client: ExecServerClient;
  readonly #timeoutMs: number;

  constructor(o: HttpProcessesOptions) {
    this.#client = execServerClient(o);
    this.#timeoutMs = o.timeoutMs ?? 30_000;
  }

  /** One call and its JSON answer, parsed with `schema`; any other status through the one error map. */
  async #json<S extends z.ZodType>(
    target: ExecTarget,
    call: Omit<ExecServerCall, "headTimeoutMs">,
    schema: S,
    opts: { extraMs?: number; limit?: number } = {},
  ): Promise<Result<z.infer<S>>> {
    const timeoutMs = this.#timeoutMs + (opts.extraMs ?? 0);
    const r = await this.#client.call(target, { ...call, headTimeoutMs: timeoutMs });
    if (!r.ok) return r;
    const answer = await readAnswer(r.value, timeoutMs, opts.limit);
    if (!answer.ok) return answer;
    const parsed = schema.safeParse(answer.value);
    return parsed.success
      ? ok(parsed.data)
      : err(new AppError("sandbox_failed", `exec server sent a bad answer to ${call.method} ${call.path}`));
  }

  /** A JSON body POSTed, a ProcessInfo back. */
  #post(target: ExecTarget, path: string, body: unknown, signal: AbortSignal): Promise<Result<ProcessInfo>> {
    return this.#json(
      target,
      {
        method: "POST",
        path,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal,
      },
      ProcessInfoSchema,
    );
  }

  start(
    target: ExecTarget,
    req: ProcessStartRequest,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>> {
    const body: ProcessStartBody = req;
    return this.#post(target, EXEC_SERVER_PATHS.processes, body, opts.signal);
  }

  async list(target: ExecTarget, opts: { signal: AbortSignal }): Promise<Result<ProcessInfo[]>> {
    const r = await this.#json(
      target,
      { method: "GET", path: EXEC_SERVER_PATHS.processes, signal: opts.signal },
      ProcessListSchema,
      { limit: LIST_JSON_LIMIT },
    );
    return r.ok ? ok(r.value.processes) : r;
  }

  get(
    target: ExecTarget,
    pid: number,
    opts: { signal: AbortSignal; waitMs?: number },
  ): Promise<Result<ProcessInfo>> {
    const wait = opts.waitMs ?? 0;
    return this.#json(
      target,
      {
        method: "GET",
        path: pidPath(pid),
        ...(wait > 0 ? { query: { waitMs: String(wait) } } : {}),
        signal: opts.signal,
      },
      ProcessInfoSchema,
      { extraMs: wait },
    );
  }

  output(
    target: ExecTarget,
    pid: number,
    q: ProcessOutputRequest,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessOutput>> {
    const query: Record<string, string> = {};
    if (q.since !== undefined) query.since = String(q.since);
    if (q.maxBytes !== undefined) query.maxBytes = String(q.maxBytes);
    if (q.waitMs !== undefined) query.waitMs = String(q.waitMs);
    return this.#json(
      target,
      { method: "GET", path: `${pidPath(pid)}/output`, query, signal: opts.signal },
      ProcessOutputSchema,
      { extraMs: q.waitMs ?? 0, limit: OUTPUT_JSON_LIMIT },
    );
  }

  async stream(
    target: ExecTarget,
    pid: number,
    since: number | undefined,
    opts: { signal: AbortSignal },
  ): Promise<Result<ReadableStream<Uint8Array>>> {
    const r = await this.#client.call(target, {
      method: "GET",
      path: `${pidPath(pid)}/output`,
      ...(since !== undefined ? { query: { since: String(since) } } : {}),
      headers: { accept: "text/event-stream" },
      signal: opts.signal,
      headTimeoutMs: this.#timeoutMs,
    });
    if (!r.ok) return r;
    const res: IncomingMessage = r.value;
    if (res.statusCode !== 200) return err(await answerError(res, this.#timeoutMs));
    // An abort of opts.signal destroys the response (the client's call), ending this stream.
    return ok(Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
  }

  stdin(
    target: ExecTarget,
    pid: number,
    bytes: Uint8Array,
    eof: boolean,
    opts: { signal: AbortSignal },
  ): Promise<Result<StdinResult>> {
    return this.#json(
      target,
      {
        method: "POST",
        path: `${pidPath(pid)}/stdin`,
        ...(eof ? { query: { eof: "1" } } : {}),
        headers: { "content-type": "application/octet-stream" },
        body: bytes,
        signal: opts.signal,
      },
      StdinResultSchema,
    );
  }

  signal(
    target: ExecTarget,
    pid: number,
    signal: string,
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>> {
    return this.#post(target, `${pidPath(pid)}/signal`, { signal }, opts.signal);
  }

  resize(
    target: ExecTarget,
    pid: number,
    size: { cols: number; rows: number },
    opts: { signal: AbortSignal },
  ): Promise<Result<ProcessInfo>> {
    return this.#post(target, `${pidPath(pid)}/resize`, size, opts.signal);
  }

  remove(target: ExecTarget, pid: number, opts: { signal: AbortSignal }): Promise<Result<ProcessInfo>> {
    return this.#json(
      target,
      { method: "DELETE", path: pidPath(pid), signal: opts.signal },
      ProcessInfoSchema,
    );
  }
}

const pidPath = (pid: number) => `${EXEC_SERVER_PATHS.processes}/${pid}`;
