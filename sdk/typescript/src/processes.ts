import { SandboxApiError } from "./errors.ts";
import { readSse } from "./sse.ts";
import type { AttachOptions, Terminal } from "./terminal.ts";
import { asApiError, type CallOptions, callOptions, type Transport } from "./transport.ts";
import type {
  ProcessExit,
  ProcessInfo,
  ProcessOutputEvent,
  ProcessOutputRead,
  ProcessSignal,
  ProcessStartBody,
  StdinResult,
} from "./types.ts";

/** One piece of a process's output: its bytes and where they start in the whole output. */
export interface OutputChunk {
  offset: number;
  bytes: Uint8Array;
  /** Bytes lost before this chunk because they had left the sandbox's ring (a slow reader). */
  dropped: number;
}

export interface OutputOptions {
  /** Byte offset to start from (default 0: everything still in the ring). */
  since?: number;
  /** Ends the iteration (the stream is closed). */
  signal?: AbortSignal;
  /** Attempts in a row that bring no byte before the iterator gives up and throws. Default 5. */
  reconnects?: number;
}

/**
 * Stream failures that say nothing about the process: the connection, the tunnel or an agent went
 * away. The stream is opened again from the last offset; anything else (the process or the
 * sandbox is gone, a bad token) is thrown.
 */
const REATTACH = new Set([
  "network_error",
  "invalid_response",
  "client_timeout",
  "tunnel_closed",
  "agent_unavailable",
  "relay_timeout",
  "no_agent",
  "sandbox_cluster_unavailable",
  "shutting_down",
  "lease_lost",
]);

/** setTimeout's longest delay: an output stream is bounded by its process and the caller's signal. */
const STREAM_TIMEOUT_MS = 2 ** 31 - 1;

const decodeB64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const encodeText = (data: string | Uint8Array): Uint8Array =>
  typeof data === "string" ? new TextEncoder().encode(data) : data;

/** Reads of one `collect` are at least this far apart. */
const COLLECT_PACE_MS = 200;

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A process in a sandbox, by pid: the state is the sandbox's, so a handle can be made again at any time. */
export class ProcessHandle {
  private current: ProcessInfo;
  /** How it ended, once an output stream saw the end (or `wait`/`refresh` found it ended). */
  exit: ProcessExit | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly base: string,
    info: ProcessInfo,
  ) {
    this.current = info;
  }

  get pid(): number {
    return this.current.pid;
  }
  /** As last seen (start, get, list, refresh, signal, kill). */
  get info(): ProcessInfo {
    return this.current;
  }
  private get path(): string {
    return `${this.base}/${this.current.pid}`;
  }

  private seen(info: ProcessInfo): ProcessInfo {
    this.current = info;
    if (!info.running) {
      this.exit = {
        exitCode: info.exitCode,
        signal: info.signal,
        timedOut: info.timedOut,
        outputBytes: info.outputBytes,
      };
    }
    return info;
  }

  async refresh(opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.seen(
      await this.transport.json<ProcessInfo>({ method: "GET", path: this.path, ...callOptions(opts) }),
    );
  }

  /**
   * Its output from `since` as it comes, until the process has exited and every byte was read.
   * A dropped stream is reattached from the offset after the last byte received, so no byte is
   * lost or repeated (`dropped` says when the sandbox's ring had already let some go). Breaking out
   * of the loop closes the stream.
   */
  async *output(opts: OutputOptions = {}): AsyncGenerator<OutputChunk> {
    let at = opts.since ?? 0;
    let failures = 0;
    const limit = opts.reconnects ?? 5;
    for (;;) {
      let progressed = false;
      try {
        const { res, signal, done } = await this.transport.open({
          method: "GET",
          path: `${this.path}/output`,
          query: { since: String(at) },
          accept: "text/event-stream",
          timeoutMs: STREAM_TIMEOUT_MS,
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        try {
          if (!res.body)
            throw new SandboxApiError({ code: "invalid_response", message: "no body", status: res.status });
          for await (const m of readSse(res.body)) {
            if (m.event === "output") {
              const e = JSON.parse(m.data) as ProcessOutputEvent;
              const bytes = decodeB64(e.data);
              at = e.offset + bytes.length;
              progressed = true;
              yield { offset: e.offset, bytes, dropped: e.dropped };
            } else if (m.event === "exit") {
              this.exit = JSON.parse(m.data) as ProcessExit;
              return;
            }
          }
          throw new SandboxApiError({
            code: "invalid_response",
            message: "the output stream ended before the process's exit event",
            status: res.status,
          });
        } catch (e) {
          throw asApiError(e, signal);
        } finally {
          done();
        }
      } catch (e) {
        const error = asApiError(e, opts.signal ?? new AbortController().signal);
        if (opts.signal?.aborted || !REATTACH.has(error.code)) throw error;
        failures = progressed ? 1 : failures + 1;
        if (failures > limit) throw error;
        // A short pause, longer after each attempt that brought nothing.
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** (failures - 1))));
      }
    }
  }

  /** One JSON read from `since` (waiting up to `waitMs` for bytes when there are none yet). */
  async read(
    opts: CallOptions & { since?: number; maxBytes?: number; waitMs?: number } = {},
  ): Promise<{ offset: number; next: number; dropped: number; bytes: Uint8Array; eof: boolean }> {
    const r = await this.transport.json<ProcessOutputRead>({
      method: "GET",
      path: `${this.path}/output`,
      query: {
        since: opts.since === undefined ? undefined : String(opts.since),
        maxBytes: opts.maxBytes === undefined ? undefined : String(opts.maxBytes),
        waitMs: opts.waitMs === undefined ? undefined : String(opts.waitMs),
      },
      ...callOptions({
        ...opts,
        timeoutMs: opts.timeoutMs ?? this.transport.defaultTimeoutMs + (opts.waitMs ?? 0),
      }),
    });
    return { offset: r.offset, next: r.next, dropped: r.dropped, bytes: decodeB64(r.data), eof: r.eof };
  }

  /**
   * The output that arrives from `since` within `waitMs` (the Agents SDK's `yield_time_ms`): reads
   * until the wait is over, the process has exited and all was read, or `maxBytes` came. `next` is
   * where to go on from; `exited`: it has ended and every byte up to `next` was read.
   */
  async collect(
    opts: CallOptions & { since?: number; waitMs: number; maxBytes?: number },
  ): Promise<{ bytes: Uint8Array; next: number; dropped: number; exited: boolean }> {
    const deadline = Date.now() + opts.waitMs;
    const max = opts.maxBytes ?? 1024 * 1024;
    const parts: Uint8Array[] = [];
    let size = 0;
    let at = opts.since ?? 0;
    let dropped = 0;
    for (;;) {
      const left = Math.max(0, deadline - Date.now());
      const r = await this.read({
        ...(opts.signal ? { signal: opts.signal } : {}),
        since: at,
        maxBytes: max - size,
        waitMs: left,
      });
      parts.push(r.bytes);
      size += r.bytes.length;
      dropped += r.dropped;
      at = r.next;
      if (r.eof) {
        await this.refresh(opts.signal ? { signal: opts.signal } : {});
        return { bytes: concat(parts, size), next: at, dropped, exited: true };
      }
      if (size >= max || left === 0) return { bytes: concat(parts, size), next: at, dropped, exited: false };
      // Gather a little before the next read: a process printing line by line would cost a request per line.
      await new Promise((r) => setTimeout(r, Math.min(COLLECT_PACE_MS, Math.max(0, deadline - Date.now()))));
    }
  }

  /** Bytes to its stdin; `eof: true` closes it after them. */
  write(data: string | Uint8Array, opts: CallOptions & { eof?: boolean } = {}): Promise<StdinResult> {
    return this.transport.json<StdinResult>({
      method: "POST",
      path: `${this.path}/stdin`,
      query: { eof: opts.eof ? "1" : undefined },
      body: encodeText(data),
      contentType: "application/octet-stream",
      // Not idempotent, yet retried like every call: the transport retries only answers that say the
      // write was not served (429, 503 queue_timeout …), so it cannot be applied twice.
      ...callOptions(opts),
    });
  }

  closeStdin(opts: CallOptions = {}): Promise<StdinResult> {
    return this.write(new Uint8Array(0), { ...opts, eof: true });
  }

  async signal(signal: ProcessSignal, opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.seen(
      await this.transport.json<ProcessInfo>({
        method: "POST",
        path: `${this.path}/signal`,
        json: { signal },
        ...callOptions(opts),
      }),
    );
  }

  async resize(cols: number, rows: number, opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.seen(
      await this.transport.json<ProcessInfo>({
        method: "POST",
        path: `${this.path}/resize`,
        json: { cols, rows },
        ...callOptions(opts),
      }),
    );
  }

  /**
   * Its terminal (a process started with `tty: true`): a WebSocket for keystrokes, output and resize.
   * Looked up first, so a gone pid is `404 process_not_found`, api mode `501` and a process without
   * a tty `409 not_a_tty` as a clear error rather than a refused handshake. Closing it leaves the
   * process running; its exit, if seen, is on `terminal.ended` and on this handle.
   */
  async attach(opts: AttachOptions = {}): Promise<Terminal> {
    return this.terminalOf(await this.refresh(opts.signal ? { signal: opts.signal } : {}), opts);
  }

  /** @internal `info` was fetched just now. */
  async terminalOf(info: ProcessInfo, opts: AttachOptions): Promise<Terminal> {
    if (!info.tty) {
      throw new SandboxApiError({
        code: "not_a_tty",
        message: `process ${info.pid} was started without tty: true; follow its output instead`,
        status: 409,
      });
    }
    const t = await this.transport.terminal(`${this.path}/tty`, opts);
    void t.ended.then((end) => {
      if (end.exit) this.exit = end.exit;
    });
    return t;
  }

  /** Kill its process group (if it runs) and forget it in the sandbox; answers how it ended. */
  async kill(opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.seen(
      await this.transport.json<ProcessInfo>({ method: "DELETE", path: this.path, ...callOptions(opts) }),
    );
  }

  /** Until it has exited: how it ended (its output from here on is read and dropped). */
  async wait(opts: { signal?: AbortSignal } = {}): Promise<ProcessExit> {
    const info = await this.refresh(opts.signal ? { signal: opts.signal } : {});
    if (!info.running && this.exit) return this.exit;
    for await (const _ of this.output({
      since: info.outputBytes,
      ...(opts.signal ? { signal: opts.signal } : {}),
    })) {
      // only the end matters
    }
    return this.exit as unknown as ProcessExit;
  }
}

/** `sandbox.processes`: long-lived processes in one sandbox (exec mode `http`; `api` answers 501). */
export class SandboxProcesses {
  private readonly base: string;

  constructor(
    private readonly transport: Transport,
    sandboxBase: string,
  ) {
    this.base = `${sandboxBase}/processes`;
  }

  /** Start one: a shell command line (string), or the API's body (`command` or `argv`, cwd, env, tty…). */
  async start(spec: string | ProcessStartBody, opts: CallOptions = {}): Promise<ProcessHandle> {
    const body = typeof spec === "string" ? { command: spec } : spec;
    const info = await this.transport.json<ProcessInfo>({
      method: "POST",
      path: this.base,
      json: body,
      // Not idempotent, yet retried like every call: only answers that say it was not served (429,
      // 503 queue_timeout …) are retried, so it cannot start twice.
      ...callOptions(opts),
    });
    return new ProcessHandle(this.transport, this.base, info);
  }

  async get(pid: number, opts: CallOptions = {}): Promise<ProcessHandle> {
    const info = await this.transport.json<ProcessInfo>({
      method: "GET",
      path: `${this.base}/${pid}`,
      ...callOptions(opts),
    });
    return new ProcessHandle(this.transport, this.base, info);
  }

  /** The terminal of a `tty` process by pid: `get(pid)` then `attach()`. */
  async attach(pid: number, opts: AttachOptions = {}): Promise<Terminal> {
    const p = await this.get(pid, opts.signal ? { signal: opts.signal } : {});
    return p.terminalOf(p.info, opts);
  }

  /** Running ones first, then recently exited ones. */
  async list(opts: CallOptions = {}): Promise<ProcessHandle[]> {
    const body = await this.transport.json<{ processes?: ProcessInfo[] }>({
      method: "GET",
      path: this.base,
      ...callOptions(opts),
    });
    if (!Array.isArray(body.processes)) {
      throw new SandboxApiError({
        code: "invalid_response",
        message: "no processes[] in the answer",
        status: 200,
      });
    }
    return body.processes.map((p) => new ProcessHandle(this.transport, this.base, p));
  }
}
