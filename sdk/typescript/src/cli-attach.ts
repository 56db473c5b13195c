// `pi-sandbox attach`: this terminal wired to a process's terminal WebSocket. Node-only.
import type { ReadStream, WriteStream } from "node:tty";
import type { Terminal, TerminalEnd } from "./terminal.ts";

/** Ctrl-] (as telnet): ends the attach, the process runs on. Never sent to the process. */
export const DETACH_BYTE = 0x1d;
/** Ctrl-D: what the end of piped (non-tty) input becomes, so a shell reading it sees end of file. */
const EOF_BYTE = "\x04";

export interface AttachIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin?: NodeJS.ReadableStream | undefined;
}

/**
 * Runs until the process exits, the user detaches (Ctrl-], or SIGINT/SIGTERM/SIGHUP to this
 * process when the terminal is not raw) or the socket closes. A tty stdin is in raw mode meanwhile
 * (every key, Ctrl-C included, goes to the process) and is restored on every way out.
 */
export async function runAttach(t: Terminal, io: AttachIo): Promise<TerminalEnd & { detached: boolean }> {
  const stdin = io.stdin as
    | (NodeJS.ReadableStream & Partial<Pick<ReadStream, "isTTY" | "setRawMode">>)
    | undefined;
  const stdout = io.stdout as NodeJS.WritableStream &
    Partial<Pick<WriteStream, "isTTY" | "columns" | "rows">>;
  const raw = Boolean(stdin?.isTTY && typeof stdin.setRawMode === "function");
  // In raw mode the line discipline is off: a message needs its own carriage return.
  const note = (s: string) => io.stderr.write(`pi-sandbox: ${s}${raw ? "\r\n" : "\n"}`);
  let detached = false;
  const detach = () => {
    detached = true;
    t.close();
  };

  t.onData = (b) => io.stdout.write(b);
  t.onDropped = (n) => note(`${n} bytes of output had already left the sandbox's buffer`);
  t.onError = (e) => note(`${e.code}: ${e.message}`);

  const onInput = (chunk: Buffer | string) => {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    const at = b.indexOf(DETACH_BYTE);
    if (at < 0) return t.write(b);
    if (at > 0) t.write(b.subarray(0, at));
    detach();
  };
  const onEnd = () => {
    if (!raw) t.write(EOF_BYTE);
  };
  const onResize = () => {
    if (stdout.columns && stdout.rows) t.resize(stdout.columns, stdout.rows);
  };
  const restore = () => {
    if (raw) stdin?.setRawMode?.(false);
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

  try {
    if (stdout.isTTY) {
      onResize();
      // Node emits it on SIGWINCH.
      stdout.on("resize", onResize);
    }
    for (const s of signals) process.on(s, detach);
    process.on("exit", restore);
    if (raw) {
      stdin?.setRawMode?.(true);
      note("attached; Ctrl-] detaches (the process runs on)");
    }
    stdin?.on("data", onInput);
    stdin?.on("end", onEnd);
    stdin?.resume();
    const end = await t.ended;
    return { ...end, detached };
  } finally {
    restore();
    stdin?.off("data", onInput);
    stdin?.off("end", onEnd);
    stdin?.pause();
    stdout.off("resize", onResize);
    for (const s of signals) process.off(s, detach);
    process.off("exit", restore);
  }
}
