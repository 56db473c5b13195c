import { execFile } from "node:child_process";

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

/**
 * Why a command could inspect or alter this server, or undefined when it cannot: a child with the
 * commands' credentials tries to open this process's memory (the check ptrace attach also makes).
 */
export function probeCommandAccess(): Promise<string | undefined> {
  if (process.listenerCount("SIGUSR1") === 0) {
    return Promise.resolve("SIGUSR1 would open the Node inspector (no SIGUSR1 listener)");
  }
  return new Promise((resolve) => {
    execFile(
      "/bin/sh",
      ["-c", 'exec 3< "/proc/$1/mem"', "probe", String(process.pid)],
      { cwd: "/", env: { PATH: "/usr/bin:/bin" }, timeout: 10_000 },
      (error, _stdout, stderr) => {
        if (!error) resolve("a command can open /proc/<server pid>/mem (the server is dumpable)");
        else if (typeof error.code === "number" && /Permission denied|Operation not permitted/.test(stderr))
          resolve(undefined);
        // The probe itself failed (no /bin/sh, a timeout): not proven safe, so treated as unsafe.
        else resolve(`the access probe failed: ${stderr.trim() || error.message}`);
      },
    );
  });
}
