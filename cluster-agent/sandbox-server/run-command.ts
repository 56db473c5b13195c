import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import type { ExecResultFields } from "./protocol.ts";

/** A shell command line (`/bin/sh -c`), or an argv run directly (argv[0] looked up in the env's PATH). */
export type Program = { command: string } | { argv: string[] };

export interface RunOptions {
  program: Program;
  /** 0: no timeout (a long-lived process ends by signal, delete or /reset). */
  timeoutMs: number;
  cwd: string;
  env: Record<string, string>;
  /** A string is written and stdin closed; `"open"` leaves it open for `RunningCommand.stdin`. */
  stdin?: string | "open";
  outputCapBytes: number;
  /** Called with the part of each chunk that is still under the cap (never after `done`). */
  onChunk(stream: "stdout" | "stderr", chunk: Buffer): void;
}

export type RunResult = ExecResultFields;

export interface RunningCommand {
  /** The process group id (the leader's pid). */
  pid: number;
  /** The command's stdin when started with `stdin: "open"`, else already ended. */
  stdin: Writable;
  /** Settles once the shell has exited and its output has been drained (or given up on). */
  done: Promise<RunResult>;
  /** Kills the command's whole process group now (client gone, lease superseded). */
  kill(): void;
  /** Sends a signal to the whole process group (a no-op once the group is gone). */
  signal(name: NodeJS.Signals): void;
  /** Stops reading from the pipes until `resume` (the client is not keeping up). */
  pause(): void;
  resume(): void;
}

export type StartResult = { ok: true; running: RunningCommand } | { ok: false; message: string };

/** How long to wait for the pipes to close after the group was killed: a `setsid` escapee may hold them. */
const DRAIN_GRACE_MS = 200;

export function killGroup(pgid: number | undefined, signal: NodeJS.Signals = "SIGKILL"): void {
  if (pgid === undefined || pgid <= 1) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Commands see a minimal environment, never the server's own (POOL_TOKEN lived there). */
export function commandEnv(
  workspace: string,
  extra: Record<string, string> | undefined,
): Record<string, string> {
  return { PATH: SAFE_PATH, HOME: workspace, LANG: "C.UTF-8", ...(extra ?? {}) };
}

const SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Runs `/bin/sh -c command` (or an argv) as the leader of a new process group. When the shell exits, whatever
 * it left running in its group (`sleep 1000 &`) is killed as well: a command's processes never
 * outlive its result. Only a deliberate escape (`setsid`) survives, until /reset or pod deletion.
 */
export function startCommand(opts: RunOptions): Promise<StartResult> {
  return new Promise((resolveStart) => {
    // process.hrtime, not the `performance` global: that getter loads perf_hooks (9 modules) in a
    // process that needs nothing else from it.
    const started = process.hrtime.bigint();
    const [file, args] =
      "argv" in opts.program
        ? [opts.program.argv[0] ?? "", opts.program.argv.slice(1)]
        : ["/bin/sh", ["-c", opts.program.command]];
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const bytes = { stdout: 0, stderr: 0 };
    let timedOut = false;
    let spawned = false;
    let exit: { code: number | null; signal: string | null } | undefined;
    let finished = false;
    let resolveDone: (r: RunResult) => void = () => {};
    const done = new Promise<RunResult>((r) => {
      resolveDone = r;
    });

    const open = { stdout: true, stderr: true };
    let drainTimer: NodeJS.Timeout | undefined;
    const timer =
      opts.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            killGroup(child.pid);
          }, opts.timeoutMs)
        : undefined;

    const finish = () => {
      if (finished || exit === undefined) return;
      finished = true;
      clearTimeout(timer);
      if (drainTimer) clearTimeout(drainTimer);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolveDone({
        exitCode: timedOut ? null : exit.code,
        signal: exit.signal,
        timedOut,
        truncated: bytes.stdout > opts.outputCapBytes || bytes.stderr > opts.outputCapBytes,
        stdoutBytes: bytes.stdout,
        stderrBytes: bytes.stderr,
        durationMs: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
      });
    };

    const pipe = (name: "stdout" | "stderr", stream: Readable | null) => {
      if (!stream) {
        open[name] = false;
        return;
      }
      stream.on("data", (chunk: Buffer) => {
        if (finished) return;
        const before = bytes[name];
        bytes[name] += chunk.length;
        if (before >= opts.outputCapBytes) return;
        const room = opts.outputCapBytes - before;
        opts.onChunk(name, chunk.length > room ? chunk.subarray(0, room) : chunk);
      });
      stream.on("close", () => {
        open[name] = false;
        if (!open.stdout && !open.stderr) finish();
      });
      stream.on("error", () => {});
    };

    child.once("error", (e) => {
      clearTimeout(timer);
      if (!spawned) {
        resolveStart({ ok: false, message: `could not start ${file}: ${e.message}` });
        return;
      }
      exit ??= { code: null, signal: null };
      finish();
    });
    child.once("spawn", () => {
      spawned = true;
      pipe("stdout", child.stdout);
      pipe("stderr", child.stderr);
      child.stdin?.on("error", () => {}); // EPIPE when the command ignores its stdin
      if (opts.stdin !== "open") {
        if (opts.stdin !== undefined && opts.stdin.length > 0) child.stdin?.end(opts.stdin);
        else child.stdin?.end();
      }
      const pid = child.pid as number; // set once "spawn" fired
      resolveStart({
        ok: true,
        running: {
          pid,
          stdin: child.stdin as Writable,
          done,
          kill: () => killGroup(pid),
          signal: (name) => killGroup(pid, name),
          pause: () => {
            child.stdout?.pause();
            child.stderr?.pause();
          },
          resume: () => {
            child.stdout?.resume();
            child.stderr?.resume();
          },
        },
      });
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      // Leftovers of the group would keep the pipes open and outlive the result: kill them.
      killGroup(child.pid);
      // Output still in the pipes is read until they close; a process that escaped the group
      // (setsid) may hold them forever, so stop waiting after a short grace.
      child.stdout?.resume();
      child.stderr?.resume();
      if (!open.stdout && !open.stderr) finish();
      else drainTimer = setTimeout(finish, DRAIN_GRACE_MS);
    });
  });
}
