import { Readable } from "node:stream";
import { EnvSchema, type ExecOutcome, LIMITS, WorkspacePathSchema } from "../../shared/api.ts";
import { AppError, err, ok, parseOrError, type Result } from "../../shared/errors.ts";
import type { ExecCall } from "./executor.ts";

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
 * The call checked as the exec server checks it (in the modes that run the wrapper nothing remote
 * does), as the wrapper's argv for exec `id`.
 */
export function checkedWrapperArgv(call: ExecCall, id: string): Result<string[]> {
  if (call.command.length === 0) return err(new AppError("invalid_request", "command: must not be empty"));
  if (
    !Number.isInteger(call.timeoutMs) ||
    call.timeoutMs < 1 ||
    call.timeoutMs > LIMITS.maxTimeoutSeconds * 1000
  ) {
    return err(
      new AppError(
        "invalid_request",
        `timeoutMs: must be an integer from 1 to ${LIMITS.maxTimeoutSeconds * 1000}`,
      ),
    );
  }
  const cwd = parseOrError(WorkspacePathSchema, call.cwd ?? "/workspace", "cwd");
  if (!cwd.ok) return cwd;
  const env = parseOrError(EnvSchema, call.env ?? {}, "env");
  if (!env.ok) return env;
  return ok(
    wrapperArgv({
      command: call.command,
      timeoutMs: call.timeoutMs,
      cwd: cwd.value,
      env: env.value,
      id,
      stdinBytes: call.stdin === undefined ? undefined : Buffer.byteLength(call.stdin),
    }),
  );
}

/** Exit status of a shell whose child died of SIGKILL: what the wrapper reports when `timeout` fired. */
const KILLED_EXIT = 137;

/**
 * What the wrapper's exit code means: a refused cwd (its message is `refusal`, where the mode puts
 * the wrapper's stderr, and the command wrote nothing) is the caller's error; a 137 at or after
 * the deadline is the timeout — `timeout -s KILL` fires only once the time is up, and the agent's
 * clock started earlier than the pod's; before it, a 137 is the command's own.
 */
export function wrapperOutcome(
  code: number | null,
  out: Omit<ExecOutcome, "exitCode" | "signal" | "timedOut" | "durationMs">,
  refusal: string,
  durationMs: number,
  timeoutMs: number,
): Result<ExecOutcome> {
  if (code === CWD_REFUSED_EXIT && refusal.startsWith(CWD_REFUSED_PREFIX))
    return err(new AppError("invalid_request", refusal.slice("pi-sandbox: ".length).trim()));
  const timedOut = code === KILLED_EXIT && durationMs >= timeoutMs;
  return ok({
    exitCode: timedOut ? null : code,
    signal: timedOut ? "SIGKILL" : null,
    timedOut,
    ...out,
    durationMs,
  });
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
