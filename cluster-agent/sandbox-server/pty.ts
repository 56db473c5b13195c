import { execFile } from "node:child_process";
import { readdir, readFile, readlink } from "node:fs/promises";
import type { Program } from "./run-command.ts";

/*
 * A terminal without a native module: the program runs under `script` (util-linux / Debian's
 * Essential bsdutils, in every Debian-based image), which allocates a pty, makes it the program's
 * controlling terminal in a new session and copies bytes between the pty and its own stdin/stdout
 * — the pipes the process table already reads and writes. The window size is set on the pty's
 * slave with `stty -F`, which makes the kernel send SIGWINCH to the terminal's foreground group.
 */

export interface TermSize {
  cols: number;
  rows: number;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The program wrapped so that it runs on a fresh pty of `size`. `-e`: script exits with its code. */
export function ptyProgram(program: Program, size: TermSize): Program {
  const target =
    "argv" in program ? program.argv.map(quote).join(" ") : `/bin/sh -c ${quote(program.command)}`;
  const line = `stty rows ${size.rows} cols ${size.cols}; exec ${target}`;
  return { argv: ["script", "-q", "-f", "-e", "-c", line, "/dev/null"] };
}

/** The fields of /proc/<pid>/stat after the parenthesised name: state, ppid, pgrp, session, … */
async function statFields(procDir: string, pid: string): Promise<string[]> {
  const stat = await readFile(`${procDir}/${pid}/stat`, "utf8").catch(() => "");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

async function pids(procDir: string): Promise<string[]> {
  return (await readdir(procDir).catch(() => [] as string[])).filter((n) => /^\d+$/.test(n));
}

/**
 * The session `script` (pid `leader`) started for the program: its child, the session's leader,
 * and the pty that is the child's stdin. `script` forks and sets the pty up right after it starts,
 * so this retries while `script` lives (up to 10 s on a loaded machine); undefined when there is
 * no such session.
 */
export async function ptySession(
  leader: number,
  procDir = "/proc",
): Promise<{ sid: number; tty: string } | undefined> {
  for (let attempt = 0; attempt < 500; attempt++) {
    if ((await statFields(procDir, String(leader))).length < 2) return undefined; // script is gone
    for (const name of await pids(procDir)) {
      if (Number((await statFields(procDir, name))[1]) !== leader) continue;
      const tty = await readlink(`${procDir}/${name}/fd/0`).catch(() => "");
      if (/^\/dev\/pts\/\d+$/.test(tty)) return { sid: Number(name), tty };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

/**
 * Signals every process of a pty session. The program under `script` is not in the process
 * group the table started (it leads a session of its own, and an interactive shell puts each job
 * in yet another group), so signals and kills go to the whole session as well.
 */
export async function signalSession(sid: number, signal: NodeJS.Signals, procDir = "/proc"): Promise<void> {
  if (sid <= 1) return;
  for (const name of await pids(procDir)) {
    if (Number((await statFields(procDir, name))[3]) !== sid) continue;
    try {
      process.kill(Number(name), signal);
    } catch {
      // ESRCH: gone meanwhile.
    }
  }
}

/** Sets the window size of the pty under `leader`; a message when it cannot. */
export async function resizePty(leader: number, size: TermSize): Promise<string | undefined> {
  const session = await ptySession(leader);
  if (session === undefined) return "the process has no terminal (yet, or any more)";
  return new Promise((resolve) => {
    execFile(
      "stty",
      ["-F", session.tty, "rows", String(size.rows), "cols", String(size.cols)],
      { timeout: 5_000, env: { PATH: "/usr/bin:/bin" } },
      (error, _out, stderr) => resolve(error ? `stty failed: ${stderr.trim() || error.message}` : undefined),
    );
  });
}
