import { readdirSync, readFileSync } from "node:fs";
import { basename } from "node:path";

/**
 * True only when this server runs in a PID namespace of its own (a pod, or a bubblewrap sandbox):
 * it is the namespace's init (pid 1), it runs under a bubblewrap or devcluster container init, or
 * its pid is 2 under another non-host init. On a host, pid 1 is
 * the system init and pid 2 is kthreadd, so a developer or test running the server there can never
 * have /reset kill anything else on the machine.
 */
export function ownsPidNamespace(procDir = "/proc"): boolean {
  if (process.pid === 1) return true;
  const init = readCmdline(1, procDir);
  if (init === undefined) return false;
  const initName = basename(init[0] ?? "");
  if (initName === "bwrap") return true;
  // devcluster's container init (`sh -c SCRIPT devcluster-init CMD…`): runc itself uses the first pids.
  if (init[3] === "devcluster-init") return true;
  // pid 2 under an init that is not the host's (a minimal container init such as tini/dumb-init).
  return process.pid === 2 && initName !== "init" && initName !== "systemd";
}

function readCmdline(pid: number, procDir: string): string[] | undefined {
  try {
    return readFileSync(`${procDir}/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return undefined;
  }
}

/** The namespace's init when it is not this server (bubblewrap's, or a container init). */
function initToSpare(): number | undefined {
  return process.pid === 1 ? undefined : 1;
}

function isZombie(pid: number, procDir: string): boolean {
  try {
    const stat = readFileSync(`${procDir}/${pid}/stat`, "utf8");
    // Field 3 follows the parenthesised command name, which may itself contain spaces or ')'.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true; // gone between readdir and read
  }
}

/**
 * Live processes other than this server and the namespace's init. Zombies are not counted: an
 * orphan reparented to a Node pid 1 is never reaped by it but holds nothing except a pid.
 */
export function otherProcesses(procDir = "/proc"): number[] {
  const spare = initToSpare();
  const pids: number[] = [];
  for (const name of readdirSync(procDir)) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || pid === spare) continue;
    if (isZombie(pid, procDir)) continue;
    pids.push(pid);
  }
  return pids;
}

/**
 * Kills every process in the namespace but this server and init. A fork bomb keeps forking while
 * it is being killed, so this repeats, with kill(-1) (every process the caller may signal except
 * itself and init, in this namespace only) between scans, until a scan finds nothing.
 */
export async function killEveryoneElse(deadlineMs = 5000): Promise<{ killed: number; remaining: number }> {
  const seen = new Set<number>();
  const until = Date.now() + deadlineMs;
  for (;;) {
    const pids = otherProcesses();
    if (pids.length === 0) return { killed: seen.size, remaining: 0 };
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
        seen.add(pid);
      } catch {
        // ESRCH: already gone; EPERM: not ours to kill (reported as remaining below).
      }
    }
    try {
      process.kill(-1, "SIGKILL");
    } catch {
      // ESRCH when nothing else is left.
    }
    if (Date.now() > until) return { killed: seen.size, remaining: otherProcesses().length };
    await new Promise((r) => setTimeout(r, 10));
  }
}
