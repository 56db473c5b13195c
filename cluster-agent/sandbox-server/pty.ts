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

/** The pty of the session `script` (pid `leader`) started: its child's stdin. */
async function ptyOf(leader: number, procDir = "/proc"): Promise<string | undefined> {
  for (const name of await readdir(procDir).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`${procDir}/${name}/stat`, "utf8").catch(() => "");
    // Fields after the parenthesised name: state, ppid, …
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid !== leader) continue;
    const tty = await readlink(`${procDir}/${name}/fd/0`).catch(() => "");
    if (/^\/dev\/pts\/\d+$/.test(tty)) return tty;
  }
  return undefined;
}

/** Sets the window size of the pty under `leader`; a message when it cannot. */
export async function resizePty(leader: number, size: TermSize): Promise<string | undefined> {
  // `script` forks its child right after it starts: a resize sent at once may need a few tries.
  let tty: string | undefined;
  for (let i = 0; i < 50 && tty === undefined; i++) {
    tty = await ptyOf(leader);
    if (tty === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  if (tty === undefined) return "the process has no terminal (yet, or any more)";
  const pty = tty;
  return new Promise((resolve) => {
    execFile(
      "stty",
      ["-F", pty, "rows", String(size.rows), "cols", String(size.cols)],
      { timeout: 5_000, env: { PATH: "/usr/bin:/bin" } },
      (error, _out, stderr) => resolve(error ? `stty failed: ${stderr.trim() || error.message}` : undefined),
    );
  });
}
