import { readFileSync } from "node:fs";
import { HostLocks } from "./host-locks.ts";
import type { IdRange } from "./oci-spec.ts";

/** 65,536 ids per container (as containerd's and Kubernetes' user namespaces use) … */
export const RANGE_SIZE = 65_536;
/** … from 1e9 up: far above login users (1000+) and the usual /etc/subuid ranges (100000+). */
const FIRST_HOST_ID = 1_000_000_000;
const SLOTS = 1_000;

/** Ranges taken on this host by users and by /etc/subuid, /etc/subgid: a pod must never share one. */
function hostRanges(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const read = (p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return "";
    }
  };
  for (const line of read("/etc/passwd").split("\n")) {
    const uid = Number(line.split(":")[2]);
    if (Number.isInteger(uid)) out.push([uid, uid + 1]);
  }
  for (const line of `${read("/etc/subuid")}\n${read("/etc/subgid")}`.split("\n")) {
    const [, start, count] = line.split(":").map(Number);
    if (Number.isInteger(start) && Number.isInteger(count))
      out.push([start ?? 0, (start ?? 0) + (count ?? 0)]);
  }
  return out;
}

/**
 * Unprivileged host id ranges, one per running container and host-wide unique (a lock file per
 * slot), so no two pods — on any devcluster of this machine — share a host uid, and none is an
 * existing user's id or root.
 */
export class IdRangeAllocator {
  private readonly locks = new HostLocks("devcluster-id-ranges");
  private readonly held = new Set<number>();

  allocate(): IdRange | undefined {
    const taken = hostRanges();
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.held.has(slot)) continue;
      const hostId = FIRST_HOST_ID + slot * RANGE_SIZE;
      if (taken.some(([a, b]) => a < hostId + RANGE_SIZE && b > hostId)) continue;
      if (!this.locks.tryLock(String(slot))) continue;
      this.held.add(slot);
      return { hostId, size: RANGE_SIZE };
    }
    return undefined;
  }

  release(r: IdRange): void {
    const slot = (r.hostId - FIRST_HOST_ID) / RANGE_SIZE;
    if (this.held.delete(slot)) this.locks.unlock(String(slot));
  }

  releaseAll(): void {
    for (const slot of this.held) this.locks.unlock(String(slot));
    this.held.clear();
  }
}
