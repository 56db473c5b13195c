import { execFile } from "node:child_process";
import { readdir, readFile, unlink } from "node:fs/promises";
import { countEntries, emptyDir } from "./workspace.ts";

/**
 * The pod's IPC namespace outlives every process in it: a file in /dev/shm, a SysV shared-memory
 * segment, semaphore set or message queue, and a POSIX message queue all stay after their creator
 * is killed. /reset removes them (after the kill, so nothing re-creates them) and verifies.
 */
export interface IpcDirs {
  /** POSIX shared memory (`shm_open`) and anything else written there. */
  shmDir: string;
  /** The mqueue file system of this IPC namespace (containerd and runc mount it here). */
  mqueueDir: string;
  procDir: string;
}

export const DEFAULT_IPC_DIRS: IpcDirs = { shmDir: "/dev/shm", mqueueDir: "/dev/mqueue", procDir: "/proc" };

/** What is left in the IPC namespace. `mqueues` is null when the mqueue fs is not mounted (not countable). */
export interface IpcResidue {
  shmEntries: number;
  sysvObjects: number;
  mqueues: number | null;
}

type SysvKind = "shm" | "sem" | "msg";
const IPCRM_FLAG: Record<SysvKind, string> = { shm: "-m", sem: "-s", msg: "-q" };

/** Ids of the namespace's SysV objects, from /proc/sysvipc (the id is the second column). */
async function sysvIds(procDir: string): Promise<Array<{ kind: SysvKind; id: string }>> {
  const out: Array<{ kind: SysvKind; id: string }> = [];
  for (const kind of ["shm", "sem", "msg"] as const) {
    const text = await readFile(`${procDir}/sysvipc/${kind}`, "utf8");
    for (const line of text.split("\n").slice(1)) {
      const id = line.trim().split(/\s+/)[1];
      if (id && /^\d+$/.test(id)) out.push({ kind, id });
    }
  }
  return out;
}

/** True when `dir` is a mount of the mqueue file system (an empty directory there would hide queues). */
async function mqueueMounted(dir: string, procDir: string): Promise<boolean> {
  const mounts = await readFile(`${procDir}/self/mountinfo`, "utf8").catch(() => "");
  // mountinfo: "id parent major:minor root mountpoint options ... - fstype source superopts"
  return mounts.split("\n").some((l) => l.split(" ")[4] === dir && l.split(" - ")[1]?.startsWith("mqueue "));
}

export async function ipcResidue(dirs: IpcDirs = DEFAULT_IPC_DIRS): Promise<IpcResidue> {
  const sysv = await sysvIds(dirs.procDir).catch(() => undefined);
  const mq = (await mqueueMounted(dirs.mqueueDir, dirs.procDir)) ? await countEntries(dirs.mqueueDir) : null;
  return {
    shmEntries: await countEntries(dirs.shmDir),
    // Unreadable /proc/sysvipc: not provably empty, so counted as one object left.
    sysvObjects: sysv === undefined ? 1 : sysv.length,
    mqueues: mq,
  };
}

/**
 * Empties /dev/shm, removes every SysV object (Node has no shmctl/semctl/msgctl, so util-linux's
 * `ipcrm`; the commands run as this server's uid, and IPC_RMID is allowed to an object's creator,
 * whose uid `IPC_SET` cannot change) and unlinks every POSIX queue. Returns how many were removed.
 */
export async function clearIpc(dirs: IpcDirs = DEFAULT_IPC_DIRS): Promise<number> {
  let removed = await emptyDir(dirs.shmDir);
  const ids = await sysvIds(dirs.procDir).catch(() => []);
  if (ids.length > 0) {
    const args = ids.flatMap(({ kind, id }) => [IPCRM_FLAG[kind], id]);
    // Exit status ignored: an id may vanish in between; ipcResidue() afterwards is the verdict.
    await new Promise<void>((resolve) => {
      execFile("ipcrm", args, { timeout: 5_000, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } }, () =>
        resolve(),
      );
    });
    removed += ids.length;
  }
  if (await mqueueMounted(dirs.mqueueDir, dirs.procDir)) {
    for (const name of await readdir(dirs.mqueueDir).catch(() => [] as string[])) {
      await unlink(`${dirs.mqueueDir}/${name}`).catch(() => {});
      removed += 1;
    }
  }
  return removed;
}

/** Why the namespace is not clean, or undefined when it is. */
export function describeResidue(r: IpcResidue): string | undefined {
  const left: string[] = [];
  if (r.shmEntries > 0) left.push(`${r.shmEntries} entries in /dev/shm`);
  if (r.sysvObjects > 0) left.push(`${r.sysvObjects} SysV IPC objects`);
  if (r.mqueues === null) left.push("POSIX message queues not checkable (/dev/mqueue is not mounted)");
  else if (r.mqueues > 0) left.push(`${r.mqueues} POSIX message queues`);
  return left.length > 0 ? left.join(", ") : undefined;
}
