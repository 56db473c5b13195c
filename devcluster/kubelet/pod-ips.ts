import { HostLocks } from "./host-locks.ts";

/**
 * Hands out `<base>.2` … `<base>.254`, host-wide unique (a lock file per address). Freed
 * addresses stay locked by this kubelet and are reused first (lowest first), so another
 * devcluster on the host cannot take them in between; they are unlocked on releaseAll().
 * `claim(ip)` must take the address for the pod (the port forwarder binds the pod's ports on it);
 * an address it cannot take — some other process on the host holds one of the ports — is skipped.
 */
export class PodIPAllocator {
  private readonly locks = new HostLocks("devcluster-pod-ips");
  private readonly inUse = new Set<string>();
  private readonly freed = new Set<string>();
  constructor(private readonly base: string) {}

  async allocate(claim: (ip: string) => Promise<boolean>): Promise<string | undefined> {
    const last = (ip: string) => Number(ip.split(".").pop());
    for (const ip of [...this.freed].sort((a, b) => last(a) - last(b))) {
      this.freed.delete(ip);
      if (await claim(ip)) {
        this.inUse.add(ip);
        return ip;
      }
      this.freed.add(ip);
    }
    for (let n = 2; n <= 254; n++) {
      const ip = `${this.base}.${n}`;
      if (this.freed.has(ip) || this.inUse.has(ip) || !this.locks.tryLock(ip)) continue;
      if (await claim(ip)) {
        this.inUse.add(ip);
        return ip;
      }
      this.locks.unlock(ip);
    }
    return undefined;
  }

  release(ip: string): void {
    if (this.inUse.delete(ip)) this.freed.add(ip);
  }

  releaseAll(): void {
    for (const ip of [...this.inUse, ...this.freed]) this.locks.unlock(ip);
    this.inUse.clear();
    this.freed.clear();
  }
}
