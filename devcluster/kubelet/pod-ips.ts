import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Pod IPs are host-wide: every devcluster on this machine (test files run in parallel worker
 * processes) shares the 127.0.1.x range. A lock file per address, holding the owner's PID,
 * keeps two kubelets from handing out the same one; a lock whose process is gone is stale.
 */
const LOCK_DIR = join(tmpdir(), "devcluster-pod-ips");

function tryLock(ip: string): boolean {
  const path = join(LOCK_DIR, ip);
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

function unlock(ip: string): void {
  try {
    unlinkSync(join(LOCK_DIR, ip));
  } catch {
    // already gone
  }
}

/** True if nothing on this host listens on ip:port (e.g. a process not managed by any kubelet). */
function portFree(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    const timer = setTimeout(() => {
      srv.close();
      resolve(false);
    }, 2000);
    srv.once("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    srv.listen({ host: ip, port, exclusive: true }, () => {
      clearTimeout(timer);
      srv.close(() => resolve(true));
    });
  });
}

/**
 * Hands out `<base>.2` … `<base>.254`. Freed addresses stay locked by this kubelet and are
 * reused first (lowest first), so another devcluster on the host cannot take them in between;
 * they are unlocked on releaseAll(). An address is skipped while another kubelet (in any
 * process) holds it, or while one of the pod's ports is already bound on it.
 */
export class PodIPAllocator {
  private readonly inUse = new Set<string>();
  private readonly freed = new Set<string>();
  constructor(private readonly base: string) {
    mkdirSync(LOCK_DIR, { recursive: true });
  }

  async allocate(ports: number[]): Promise<string | undefined> {
    const last = (ip: string) => Number(ip.split(".").pop());
    for (const ip of [...this.freed].sort((a, b) => last(a) - last(b))) {
      this.freed.delete(ip);
      if (await portsFree(ip, ports)) {
        this.inUse.add(ip);
        return ip;
      }
      this.freed.add(ip);
    }
    for (let n = 2; n <= 254; n++) {
      const ip = `${this.base}.${n}`;
      if (this.freed.has(ip) || this.inUse.has(ip) || !tryLock(ip)) continue;
      if (await portsFree(ip, ports)) {
        this.inUse.add(ip);
        return ip;
      }
      unlock(ip);
    }
    return undefined;
  }

  release(ip: string): void {
    if (this.inUse.delete(ip)) this.freed.add(ip);
  }

  releaseAll(): void {
    for (const ip of [...this.inUse, ...this.freed]) unlock(ip);
    this.inUse.clear();
    this.freed.clear();
  }
}

async function portsFree(ip: string, ports: number[]): Promise<boolean> {
  for (const port of ports) if (!(await portFree(ip, port))) return false;
  return true;
}
