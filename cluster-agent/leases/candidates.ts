import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import type { CacheChange } from "../k8s/watched-cache.ts";
import type { Clock } from "../pool-state/clock.ts";
import { holderOf, isLeaseFree, keptForTenantOf, parseHolder } from "../pool-state/lease-record.ts";
import { isPodReady } from "../pool-state/pod-state.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";

/**
 * Pods that may be handed out: Ready, not terminating, with a free Lease, and not excluded. A
 * free Lease kept for a tenant (same-tenant reuse) is never one: such a pod goes to its tenant only
 * by a direct hand-off, and the controller replaces it if it is ever found free.
 */
export function freePodNames(
  pods: Iterable<V1Pod>,
  leaseOf: (name: string) => V1Lease | undefined,
  exclude: (name: string) => boolean,
): string[] {
  const out: string[] = [];
  for (const p of pods) {
    const name = p.metadata?.name;
    if (!name || exclude(name) || !isPodReady(p)) continue;
    const lease = leaseOf(name);
    if (!lease || !isLeaseFree(lease) || keptForTenantOf(lease) !== undefined) continue;
    out.push(name);
  }
  return out.sort();
}

/**
 * The order this replica tries candidates in: the sorted list rotated by a per-replica random
 * offset plus a per-attempt counter, so replicas start at different pods and rarely race for one.
 */
export function rotate<T>(items: readonly T[], start: number): T[] {
  const n = items.length;
  if (n === 0) return [];
  const s = ((start % n) + n) % n;
  return [...items.slice(s), ...items.slice(0, s)];
}

export interface CandidateChooserOptions {
  store: PoolStore;
  agentId: string;
  clock: Clock;
  /** How long to leave a pod freed by another replica to that replica's own waiters. */
  handoffGraceMs: number;
  /** How long to leave a pod alone after a CAS on it failed without an answer (default 250 ms). */
  failedCasRetryMs?: number;
  random: () => number;
  /** Pods this replica holds right now. */
  isHeld: (name: string) => boolean;
  /** Run the dispatch again (a hand-off grace ran out). */
  wake: () => void;
}

/**
 * Which free pods this replica tries next, and which it leaves alone for now: pods with our own
 * CAS in flight, pods we just lost a CAS on (until the cache shows a newer Lease), and pods
 * another replica just freed (that replica serves its own queue first — it knows before anyone
 * else — so the others hold back for a moment instead of racing it into a 409).
 */
export class CandidateChooser {
  private readonly reserved = new Set<string>();
  private readonly conflicted = new Map<string, string | undefined>();
  /** Pods left alone until a time: freed by another replica (hand-off grace), or a failed CAS. */
  private readonly skipUntil = new Map<string, number>();
  private rotation: number;
  private graceTimer: unknown;

  constructor(private readonly o: CandidateChooserOptions) {
    this.rotation = Math.floor(o.random() * 1_000_000);
  }

  /** Feed every Lease cache change through here before dispatching. */
  onLeaseChange(c: CacheChange<V1Lease>): void {
    const name = c.obj.metadata?.name ?? "";
    if (c.type === "delete") {
      this.skipUntil.delete(name);
      this.conflicted.delete(name);
    } else if (c.type === "update" && holderOf(c.old) && !holderOf(c.obj)) {
      const prev = parseHolder(holderOf(c.old));
      if (prev && prev.agentId !== this.o.agentId)
        this.skipUntil.set(name, this.o.clock.now() + this.o.handoffGraceMs);
    }
  }

  reserve(name: string): void {
    this.reserved.add(name);
  }

  /** Our CAS on `name` ended; on a loss, skip it until its Lease moves past `lostAt`. */
  settled(name: string, lostAt?: { resourceVersion: string | undefined }): void {
    this.reserved.delete(name);
    if (lostAt) this.conflicted.set(name, lostAt.resourceVersion);
  }

  /**
   * Our CAS on `name` failed without a verdict (no answer, 5xx): nothing says another holder has
   * it, and nothing may change its Lease to tell us so — skipping it until its Lease moves (as for
   * a lost CAS) would shun a free pod for good after an API outage. Try it again shortly instead.
   */
  failed(name: string): void {
    this.reserved.delete(name);
    this.skipUntil.set(name, this.o.clock.now() + (this.o.failedCasRetryMs ?? 250));
  }

  /** Free pods to try now, in this replica's rotated order. */
  next(): string[] {
    const leases = this.o.store.leases;
    const names = freePodNames(
      this.o.store.pods.list(),
      (n) => leases.get(n),
      (n) => this.excluded(n, leases.get(n)?.metadata?.resourceVersion),
    );
    return rotate(names, this.rotation++);
  }

  /**
   * Free, Ready pods in the cache that nobody here holds or is taking, whatever this replica's own
   * skip rules say: > 0 means pods exist (a waiter is slowed by the API or a race, not by a lack of pods).
   */
  freeInCache(): number {
    const leases = this.o.store.leases;
    return freePodNames(
      this.o.store.pods.list(),
      (n) => leases.get(n),
      (n) => this.reserved.has(n) || this.o.isHeld(n),
    ).length;
  }

  stop(): void {
    this.o.clock.clearTimeout(this.graceTimer);
  }

  private excluded(n: string, resourceVersion: string | undefined): boolean {
    if (this.reserved.has(n) || this.o.isHeld(n)) return true;
    const until = this.skipUntil.get(n);
    if (until !== undefined) {
      const left = until - this.o.clock.now();
      if (left > 0) {
        this.wakeIn(left);
        return true;
      }
      this.skipUntil.delete(n);
    }
    if (!this.conflicted.has(n)) return false;
    if (this.conflicted.get(n) !== resourceVersion) {
      this.conflicted.delete(n);
      return false;
    }
    return true;
  }

  private wakeIn(ms: number): void {
    if (this.graceTimer !== undefined) return;
    this.graceTimer = this.o.clock.setTimeout(() => {
      this.graceTimer = undefined;
      this.o.wake();
    }, Math.ceil(ms) + 1);
  }
}
