import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Container } from "./container.ts";

/** One exec'd process: `runc exec` on the host, and the pid file holding the process's host PID. */
export interface ExecProcess {
  child: ChildProcess;
  pidFile: string;
}

/** Starts `argv` in the container with `runc exec` (the container's user, caps, seccomp, cgroup). */
export function startExec(container: Container, argv: string[], scratchDir: string): ExecProcess {
  const pidFile = join(scratchDir, `exec-${randomBytes(6).toString("hex")}.pid`);
  const child = container.exec(argv, pidFile);
  child.once("close", () => rmSync(pidFile, { force: true }));
  return { child, pidFile };
}

/**
 * SIGKILLs the exec'd process and everything it started (its caller went away): `runc exec`
 * forwards signals but cannot forward SIGKILL, so the tree is killed by host PID. runc writes the
 * pid file only after the process started (its first output may come earlier): wait for it.
 */
export function killExec(p: ExecProcess, attempts = 100): void {
  const { child } = p;
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  let pid: number | undefined;
  try {
    pid = Number(readFileSync(p.pidFile, "utf8").trim()) || undefined;
  } catch {
    pid = undefined;
  }
  if (pid === undefined && attempts > 0) {
    setTimeout(() => killExec(p, attempts - 1), 20).unref();
    return;
  }
  if (pid !== undefined) for (const x of [pid, ...descendantsOf(pid)]) safeKill(x);
  safeKill(child.pid);
}

function safeKill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Host PIDs below `pid` (a procfs scan: /proc/PID/task/PID/children may be absent). */
export function descendantsOf(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(name), Number(rest[1]));
    } catch {
      // exited while scanning
    }
  }
  const out: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const p = frontier.pop();
    for (const [child, ppid] of parent) {
      if (ppid === p) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}
