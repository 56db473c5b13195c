import { type ChildProcess, spawn } from "node:child_process";
import { type Sandbox, sandboxEnv } from "./sandbox.ts";

/**
 * Starts `argv` inside a running sandbox: it joins the init's user, mount, PID, IPC, UTS and
 * cgroup namespaces (so it sees the pod's /workspace and processes, and they see it), keeps the
 * credentials the user namespace maps the kubelet's to (the pod's uid/gid), and runs with
 * no_new_privs. Its capabilities are empty because the exec into a non-root uid clears them.
 * The process gets its own process group (detached) so the whole command can be killed at once.
 * setpriv exits 127 (not found) / 126 (not executable) when the command cannot be started.
 */
export function spawnInSandbox(sandbox: Sandbox, argv: string[]): ChildProcess {
  const pid = sandbox.initPid;
  if (pid === undefined) throw new Error("sandbox has not started");
  const { uid, gid, workingDir } = sandbox.spec;
  return spawn(
    "nsenter",
    [
      `--target=${pid}`,
      "--user",
      "--mount",
      "--pid",
      "--ipc",
      "--uts",
      "--cgroup",
      "--preserve-credentials",
      "--root",
      `--wdns=${workingDir}`,
      "--",
      "/usr/bin/setpriv",
      `--reuid=${uid}`,
      `--regid=${gid}`,
      "--keep-groups",
      "--inh-caps=-all",
      "--no-new-privs",
      "--pdeathsig=SIGKILL",
      "--",
      ...argv,
    ],
    { env: sandboxEnv(sandbox.spec, sandbox.env), stdio: ["pipe", "pipe", "pipe"], detached: true },
  );
}
