import { startCommand } from "./run-command.ts";

/*
 * Commands run as this server's uid (Pod Security "restricted" leaves no capability to switch
 * uid), so the kernel protects the server from them only if it is not dumpable: then ptrace,
 * process_vm_readv/writev, /proc/<pid>/mem, /environ and /fd all refuse a same-uid process without
 * CAP_SYS_PTRACE. Node cannot call prctl(PR_SET_DUMPABLE, 0); the kernel clears the flag at exec
 * when the executable is not readable by the caller, so the image runs the server with an
 * execute-only (mode 0111) copy of node. Dumpability cannot change after exec without prctl or a
 * uid change, neither of which a command can cause, so one probe at start is enough.
 */

/**
 * SIGUSR1 makes Node open its inspector on 127.0.0.1:9229, i.e. lets any same-uid process run
 * code inside the server. A listener replaces that default (Node 20+; `--disable-sigusr1` needs 22.14).
 */
export function guardInspectorSignal(): void {
  process.on("SIGUSR1", () => {});
}

const PROBE_TIMEOUT_MS = 10_000;
/** Enough for the shell's one line of complaint. */
const PROBE_STDERR_BYTES = 4096;

/**
 * Why a command could inspect or alter this server, or undefined when it cannot: a child with the
 * commands' credentials tries to open this process's memory (the check ptrace attach also makes).
 * The child is started by the commands' own spawn path (`run-command.ts`), so the probe is also
 * what loads and compiles that path before the port opens: the first real command on a fresh pod
 * does not pay for it on its caller's response path, and no separate throwaway command is needed.
 */
export async function probeCommandAccess(): Promise<string | undefined> {
  if (process.listenerCount("SIGUSR1") === 0) {
    return "SIGUSR1 would open the Node inspector (no SIGUSR1 listener)";
  }
  const stderr: Buffer[] = [];
  const started = await startCommand({
    program: { argv: ["/bin/sh", "-c", 'exec 3< "/proc/$1/mem"', "probe", String(process.pid)] },
    timeoutMs: PROBE_TIMEOUT_MS,
    cwd: "/",
    env: { PATH: "/usr/bin:/bin" },
    outputCapBytes: PROBE_STDERR_BYTES,
    onChunk: (stream, chunk) => {
      if (stream === "stderr") stderr.push(chunk);
    },
  });
  // The probe itself failed (no /bin/sh, a timeout): not proven safe, so treated as unsafe.
  if (!started.ok) return `the access probe failed: ${started.message}`;
  const r = await started.running.done;
  const said = Buffer.concat(stderr).toString("utf8").trim();
  if (r.exitCode === 0) return "a command can open /proc/<server pid>/mem (the server is dumpable)";
  if (r.exitCode !== null && /Permission denied|Operation not permitted/.test(said)) return undefined;
  const how = r.timedOut ? "timed out" : r.exitCode !== null ? `exit ${r.exitCode}` : `signal ${r.signal}`;
  return `the access probe failed: ${said || how}`;
}
