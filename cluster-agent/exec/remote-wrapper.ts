import { Readable } from "node:stream";

/**
 * The shell program `api` mode runs through pods/exec. pods/exec neither kills remote processes
 * when its socket closes (on a real cluster) nor knows about timeouts, cwd or a clean environment,
 * so the remote side enforces them itself:
 *  - coreutils `timeout -s KILL` makes itself the leader of a new process group and, on expiry,
 *    SIGKILLs that whole group (the command and everything it started, `sleep 100 &` included);
 *  - after the command ends its leftovers in that group are killed too, as the exec server does;
 *  - `env -i` gives the command the same minimal environment as the exec server (the container's
 *    own env carries POOL_TOKEN and must not leak);
 *  - the group id is written to /tmp/.pi-exec-<id> so that an abort can kill the group from a
 *    second exec (see KILL_SCRIPT);
 *  - stdin, when there is one, is read as exactly `$5` bytes (`head -c`) and piped to the command:
 *    the command sees end-of-file after them without the client closing its stdin stream, which
 *    only the v5 channel protocol can do (v4, e.g. a 1.28 kubelet, has no half-close).
 * Every value travels as a positional argument, never spliced into the script: no quoting bugs.
 */
export const WRAPPER_SCRIPT = [
  "c=$1; t=$2; cmd=$3; id=$4; n=$5; shift 5",
  'cd "$c" 2>/dev/null || { printf "pi-sandbox: cwd %s is not an existing directory\\n" "$c" >&2; exit 222; }',
  'case "$(pwd -P)" in /workspace|/workspace/*) ;; *) printf "pi-sandbox: cwd %s leads outside /workspace\\n" "$c" >&2; exit 222;; esac',
  // Background jobs of a non-interactive shell get /dev/null as stdin; keep the real one on fd 3.
  "command exec 3<&0 || exec 3</dev/null",
  // The command keeps stderr on fd 4; the wrapper's own goes to /dev/null so the shell's job
  // notices ("Killed") never mix into the command's stderr.
  "exec 4>&2 2>/dev/null",
  // `exec`: run is only called in the background, so its subshell BECOMES timeout, and `$!` is
  // timeout's pid — the group leader that the kills below and KILL_SCRIPT address.
  'run() { exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/workspace LANG=C.UTF-8 "$@" timeout -s KILL "$t" /bin/sh -c "$cmd"; }',
  'if [ -n "$n" ]; then head -c "$n" <&3 3<&- | run "$@" 3<&- 2>&4 4>&- & else run "$@" <&3 3<&- 2>&4 4>&- & fi',
  "p=$!",
  'echo "$p" > "/tmp/.pi-exec-$id" 2>/dev/null',
  'wait "$p"; s=$?',
  'kill -KILL -"$p" 2>/dev/null',
  'rm -f "/tmp/.pi-exec-$id" 2>/dev/null',
  'exit "$s"',
].join("\n");

/** Exit code the wrapper uses when it refuses the cwd (paired with its "pi-sandbox: cwd" stderr). */
export const CWD_REFUSED_EXIT = 222;
export const CWD_REFUSED_PREFIX = "pi-sandbox: cwd ";

/** Kills the group recorded by WRAPPER_SCRIPT for exec `$1`. */
export const KILL_SCRIPT = [
  'f="/tmp/.pi-exec-$1"',
  'p=$(cat "$f" 2>/dev/null)',
  'case "$p" in ""|*[!0-9]*) exit 0;; esac',
  'kill -KILL -"$p" 2>/dev/null',
  'rm -f "$f" 2>/dev/null',
  "exit 0",
].join("\n");

export function wrapperArgv(opts: {
  command: string;
  timeoutMs: number;
  cwd: string;
  env: Record<string, string>;
  id: string;
  /** Bytes the client sends on stdin; undefined: no stdin (the command reads end-of-file). */
  stdinBytes?: number | undefined;
}): string[] {
  const seconds = (Math.max(1, opts.timeoutMs) / 1000).toFixed(3);
  const envPairs = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
  const n = opts.stdinBytes === undefined ? "" : String(opts.stdinBytes);
  return [
    "/bin/sh",
    "-c",
    WRAPPER_SCRIPT,
    "pi-exec",
    opts.cwd,
    seconds,
    opts.command,
    opts.id,
    n,
    ...envPairs,
  ];
}

export function killArgv(id: string): string[] {
  return ["/bin/sh", "-c", KILL_SCRIPT, "pi-kill", id];
}

/**
 * The stdin stream handed to client-node for a pods/exec whose remote side reads exactly
 * `bytes.byteLength` bytes (WRAPPER_SCRIPT's `$5`, api-files' write). It never ends: when a stdin
 * stream ends, client-node sends v5's close-stdin frame, but on v4 (no half-close) it closes the
 * whole WebSocket — before the command has answered. The caller destroys it when the exec is over.
 */
export function sizedStdin(bytes: Uint8Array): Readable {
  const stream = new Readable({ read() {} });
  if (bytes.byteLength > 0) stream.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return stream;
}
