import type { ProcessLimits } from "./config.ts";
import { OutputRing, type RingRead } from "./output-ring.ts";
import type { ExecServerErrorCode, ProcessExitEvent, ProcessInfo, ProcessSignal } from "./protocol.ts";
import { ptyProgram, ptySession, resizePty, signalSession, type TermSize } from "./pty.ts";
import { type Program, type RunningCommand, type RunResult, startCommand } from "./run-command.ts";

export type TableError = {
  ok: false;
  status: number;
  code: ExecServerErrorCode;
  message: string;
  exitCode?: number | null;
  signal?: string | null;
};
export type TableResult<T> = { ok: true; value: T } | TableError;

export interface StartSpec {
  program: Program;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  ringBytes: number;
  /** The lease fence the start came with: a newer holder's fence kills the process. */
  fence: number;
  /** Run on a pty of this size (pty.ts). */
  tty?: TermSize;
}

/** Queued stdin bytes a process has not read yet beyond which writes answer 503 `stdin_busy`. */
const STDIN_QUEUE_LIMIT = 1024 * 1024;
/** How long a stdin write waits for the pipe to take its bytes before answering with them still queued. */
const STDIN_WAIT_MS = 5_000;

/** One process of the table; `ring` holds its stdout and stderr interleaved. */
export interface ProcessEntry {
  readonly pid: number;
  readonly ring: OutputRing;
  readonly fence: number;
  readonly program: Program;
  readonly tty: boolean;
  readonly cwd: string;
  readonly startedAt: Date;
  endedAt: Date | undefined;
  result: RunResult | undefined;
  stdinOpen: boolean;
  command: RunningCommand;
  /** Signals the process group and, for a tty process, its pty session (pty.ts). */
  signalAll(name: NodeJS.Signals): Promise<void>;
  /** Calls `wake` whenever the ring grows or the process exits, until the returned function is called. */
  subscribe(wake: () => void): () => void;
}

class Entry implements ProcessEntry {
  endedAt: Date | undefined;
  /** Order of exit (clock time can tie within a millisecond). */
  exitSeq = 0;
  result: RunResult | undefined;
  stdinOpen = true;
  readonly #listeners = new Set<() => void>();
  /** A tty process's session id, looked up once after the start (undefined: none or not a tty). */
  session: Promise<number | undefined> = Promise.resolve(undefined);
  constructor(
    readonly pid: number,
    readonly ring: OutputRing,
    readonly fence: number,
    readonly program: Program,
    readonly tty: boolean,
    readonly cwd: string,
    readonly startedAt: Date,
    public command: RunningCommand,
  ) {}
  async signalAll(name: NodeJS.Signals): Promise<void> {
    // The session first: once `script` is gone its child is reparented and cannot be found by it.
    const sid = await this.session;
    this.command.signal(name);
    if (sid !== undefined) await signalSession(sid, name);
  }
  subscribe(wake: () => void): () => void {
    this.#listeners.add(wake);
    return () => this.#listeners.delete(wake);
  }
  notify(): void {
    for (const wake of [...this.#listeners]) wake();
  }
}

const err = (status: number, code: ExecServerErrorCode, message: string): TableError => ({
  ok: false,
  status,
  code,
  message,
});

function exitedError(e: ProcessEntry, what: string): TableError {
  const how = e.result?.timedOut
    ? "timed out"
    : e.result?.exitCode !== null && e.result?.exitCode !== undefined
      ? `exited with code ${e.result.exitCode}`
      : `was killed by ${e.result?.signal ?? "a signal"}`;
  return {
    ...err(409, "process_exited", `process ${e.pid} ${how}: ${what}`),
    exitCode: e.result?.exitCode ?? null,
    signal: e.result?.signal ?? null,
  };
}

/**
 * The pod's long-lived processes, by pid. The state lives here, in the pod, so any agent replica
 * can serve any process. Bounded: `maxRunning` at once, `keepExited` finished ones kept for their
 * exit code and output (the oldest forgotten first), and all rings within `ringTotalBytes`.
 */
export class ProcessTable {
  readonly #entries = new Map<number, Entry>();
  #exits = 0;
  constructor(readonly limits: ProcessLimits) {}

  async start(spec: StartSpec): Promise<TableResult<ProcessEntry>> {
    const running = [...this.#entries.values()].filter((e) => e.result === undefined).length;
    if (running >= this.limits.maxRunning) {
      return err(
        429,
        "process_limit",
        `${running} processes are running; this sandbox allows ${this.limits.maxRunning}`,
      );
    }
    if (!this.#makeRoom(spec.ringBytes)) {
      return err(
        429,
        "ring_limit",
        `an output ring of ${spec.ringBytes} bytes would pass this sandbox's ${this.limits.ringTotalBytes} bytes for all processes`,
      );
    }
    const ring = new OutputRing(spec.ringBytes);
    let entry: Entry | undefined;
    const started = await startCommand({
      program: spec.tty ? ptyProgram(spec.program, spec.tty) : spec.program,
      timeoutMs: spec.timeoutMs,
      cwd: spec.cwd,
      env: spec.env,
      stdin: "open",
      outputCapBytes: Number.POSITIVE_INFINITY,
      onChunk: (_stream, chunk) => {
        ring.write(chunk);
        entry?.notify();
      },
    });
    if (!started.ok) return err(400, "spawn_failed", started.message);
    const cmd = started.running;
    entry = new Entry(
      cmd.pid,
      ring,
      spec.fence,
      spec.program,
      spec.tty !== undefined,
      spec.cwd,
      new Date(),
      cmd,
    );
    if (spec.tty) entry.session = ptySession(cmd.pid).then((s) => s?.sid);
    // A pid the kernel reused after an exited process: the new process takes the number.
    this.#entries.delete(cmd.pid);
    this.#entries.set(cmd.pid, entry);
    const e = entry;
    cmd.stdin.on("close", () => {
      e.stdinOpen = false;
    });
    void cmd.done.then(async (result) => {
      e.result = result;
      e.endedAt = new Date();
      e.exitSeq = ++this.#exits;
      e.stdinOpen = false;
      // Like the rest of a group when its leader exits: what is left of a tty's session is killed.
      const sid = await e.session;
      if (sid !== undefined) await signalSession(sid, "SIGKILL");
      e.notify();
      this.#forgetOldExited();
    });
    return { ok: true, value: entry };
  }

  get(pid: number): TableResult<ProcessEntry> {
    const e = this.#entries.get(pid);
    return e ? { ok: true, value: e } : err(404, "process_not_found", `no process ${pid} in this sandbox`);
  }

  /** Running first (oldest first), then exited (most recent first). */
  list(): ProcessEntry[] {
    const all = [...this.#entries.values()];
    const running = all.filter((e) => e.result === undefined);
    const exited = all.filter((e) => e.result !== undefined).sort((a, b) => b.exitSeq - a.exitSeq);
    return [...running, ...exited];
  }

  read(e: ProcessEntry, since: number, max: number): TableResult<RingRead> {
    if (since > e.ring.end) {
      return err(400, "invalid_request", `since: ${since} is past the end of the output (${e.ring.end})`);
    }
    return { ok: true, value: e.ring.read(since, max) };
  }

  /**
   * Writes bytes to the process's stdin; `eof` closes it afterwards. Settles once the pipe took them,
   * or after STDIN_WAIT_MS with them still queued (`pending`): accepted bytes are delivered in order
   * whenever the process reads, so a client never resends them.
   */
  async writeStdin(
    e: ProcessEntry,
    bytes: Buffer,
    eof: boolean,
  ): Promise<TableResult<{ written: number; pending: number }>> {
    if (e.result !== undefined) return exitedError(e, "its stdin is closed");
    const stdin = e.command.stdin;
    if (!e.stdinOpen || stdin.writableEnded || stdin.destroyed) {
      return err(409, "stdin_closed", `process ${e.pid}'s stdin was closed (eof)`);
    }
    if (stdin.writableLength + bytes.length > STDIN_QUEUE_LIMIT) {
      return err(
        503,
        "stdin_busy",
        `process ${e.pid} is not reading its stdin: ${stdin.writableLength} bytes are still queued`,
      );
    }
    if (eof) e.stdinOpen = false;
    let timer: NodeJS.Timeout | undefined;
    const wrote = await new Promise<Error | null | undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), STDIN_WAIT_MS);
      if (bytes.length === 0) resolve(undefined);
      else stdin.write(bytes, resolve);
      if (eof) stdin.end();
    });
    clearTimeout(timer);
    if (wrote) {
      // EPIPE: the process closed its end (or exited) before reading.
      if (e.result !== undefined) return exitedError(e, "its stdin is closed");
      return err(409, "stdin_closed", `process ${e.pid}'s stdin is closed: ${wrote.message}`);
    }
    return { ok: true, value: { written: bytes.length, pending: stdin.writableLength } };
  }

  async signal(e: ProcessEntry, name: ProcessSignal): Promise<TableResult<ProcessEntry>> {
    if (e.result !== undefined) return exitedError(e, `${name} not sent`);
    await e.signalAll(name);
    return { ok: true, value: e };
  }

  /** Sets the window size of a tty process (its foreground group gets SIGWINCH). */
  async resize(e: ProcessEntry, size: TermSize): Promise<TableResult<ProcessEntry>> {
    if (e.result !== undefined) return exitedError(e, "not resized");
    if (!e.tty) return err(409, "not_a_tty", `process ${e.pid} was not started with tty: true`);
    const failed = await resizePty(e.pid, size);
    if (failed !== undefined) {
      if (e.result !== undefined) return exitedError(e, "not resized");
      return err(409, "not_a_tty", `process ${e.pid}: ${failed}`);
    }
    return { ok: true, value: e };
  }

  /** Kills the process group, waits for the exit, and forgets the process. */
  async remove(e: ProcessEntry): Promise<ProcessEntry> {
    if (e.result === undefined) {
      await e.signalAll("SIGKILL");
      await e.command.done;
    }
    if (this.#entries.get(e.pid) === e) this.#entries.delete(e.pid);
    return e;
  }

  /** A newer lease holder arrived: processes started under older fences must not run next to it. */
  killOlderThan(fence: number): void {
    for (const e of this.#entries.values()) {
      if (e.result === undefined && e.fence < fence) void e.signalAll("SIGKILL");
    }
  }

  /** /reset and shutdown: every group killed, the table emptied (readers see their streams end). */
  killAll(): void {
    for (const e of this.#entries.values()) if (e.result === undefined) e.command.kill();
    this.#entries.clear();
  }

  /** Frees ring budget by forgetting exited processes, oldest first. False when it cannot be met. */
  #makeRoom(bytes: number): boolean {
    const used = () => [...this.#entries.values()].reduce((n, e) => n + e.ring.capacity, 0);
    for (const e of this.list().reverse()) {
      if (used() + bytes <= this.limits.ringTotalBytes) break;
      if (e.result !== undefined) this.#entries.delete(e.pid);
    }
    return used() + bytes <= this.limits.ringTotalBytes;
  }

  #forgetOldExited(): void {
    const exited = this.list().filter((e) => e.result !== undefined);
    for (const e of exited.slice(this.limits.keepExited)) this.#entries.delete(e.pid);
  }
}

export function processInfo(e: ProcessEntry): ProcessInfo {
  return {
    pid: e.pid,
    command: "command" in e.program ? e.program.command : null,
    argv: "argv" in e.program ? e.program.argv : null,
    tty: e.tty,
    cwd: e.cwd,
    startedAt: e.startedAt.toISOString(),
    running: e.result === undefined,
    exitCode: e.result?.exitCode ?? null,
    signal: e.result?.signal ?? null,
    timedOut: e.result?.timedOut ?? false,
    endedAt: e.endedAt?.toISOString() ?? null,
    outputBytes: e.ring.end,
    outputStart: e.ring.start,
    ringBytes: e.ring.capacity,
    stdinOpen: e.stdinOpen,
  };
}

export function exitEvent(e: ProcessEntry): ProcessExitEvent {
  return {
    exitCode: e.result?.exitCode ?? null,
    signal: e.result?.signal ?? null,
    timedOut: e.result?.timedOut ?? false,
    outputBytes: e.ring.end,
  };
}
