import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Host-wide claims shared by every devcluster on this machine (test files run in parallel worker
 * processes): one lock file per claimed name, holding the owner's PID; a lock whose process is
 * gone is stale and may be taken over.
 */
export class HostLocks {
  private readonly dir: string;
  constructor(kind: string) {
    this.dir = join(tmpdir(), kind);
    mkdirSync(this.dir, { recursive: true });
  }

  tryLock(name: string): boolean {
    const path = join(this.dir, name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(path, String(process.pid), { flag: "wx" });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") return false;
        if (!staleLock(path)) return false;
        try {
          unlinkSync(path);
        } catch {
          // someone else removed it first; try again
        }
      }
    }
    return false;
  }

  unlock(name: string): void {
    try {
      unlinkSync(join(this.dir, name));
    } catch {
      // already gone
    }
  }
}

function staleLock(path: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(path, "utf8"));
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
