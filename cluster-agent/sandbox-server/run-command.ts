import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import type { ExecResultFields } from "./protocol.ts";

export interface RunOptions {
  command: string;
  timeoutMs: number;
  cwd: string;
  env: Record<string, string>;
  stdin?: string;
  outputCapBytes: number;
  /** Called with the part of each chunk that is still under the cap (never after `done`). */
  onChunk(stream: "stdout" | "stderr", chunk: Buffer): void;
}

export type RunResult = ExecResultFields;

export interface RunningCommand {
  /** Settles once the shell has exited and its output has been drained (or given up on). */
  done: Promise<RunResult>;
  /** Kills the command's whole process group now (client gone, lease superseded). */
  kill(): void;
  /** Stops reading from the pipes until `resume` (the client is not keeping up). */
  pause(): void;
  resume(): void;
}

export type StartResult = { ok: true; running: RunningCommand } | { ok: false; message: string };

/** How long to wait for the pipes to close after the group was killed: a `setsid` escapee may hold them. */
const DRAIN_GRACE_MS = 200;

export function killGroup(pgid: number | undefined): void {
  if (pgid === undefined || pgid <= 1) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Runs `/bin/sh -c command` as the leader of a new process group. When the shell exits, whatever
 * it left running in its group (`sleep 1000 &`) is killed as well: a command's processes never
 * outlive its result. Only a deliberate escape (`setsid`) survives, until /reset or pod deletion.
 */
export function startCommand(opts: RunOptions): Promise<StartResult> {
  return new Promise((resolveStart) => {
    const started = performance.now();
    const child = spawn("/bin/sh", ["-c", opts.command], {
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
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, opts.timeoutMs);

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
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
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
        resolveStart({ ok: false, message: `could not start /bin/sh: ${e.message}` });
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
      if (opts.stdin !== undefined && opts.stdin.length > 0) child.stdin?.end(opts.stdin);
      else child.stdin?.end();
      resolveStart({
        ok: true,
        running: {
          done,
          kill: () => killGroup(child.pid),
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
