import type { Result } from "../../shared/errors.ts";
import type { LeaseHandle } from "./types.ts";

/** One caller waiting for a pod, from acquire() until it is served, times out, aborts or is shut out. */
export interface Waiter {
  tenant: string;
  requestId: string;
  holder: string;
  /** The network policy annotation its use of the pod carries (AcquireRequest.network). */
  network?: string | undefined;
  ttlSeconds: number;
  enqueuedAt: number;
  signal: AbortSignal | undefined;
  settled: boolean;
  queuedEmitted: boolean;
  /** The dispatch found no free pod at all for it: a caller the pool should grow for. */
  starved: boolean;
  resolve: (r: Result<LeaseHandle>) => void;
  cleanup: () => void;
}

/**
 * The per-replica FIFO of callers waiting for a pod. Order is arrival order; a waiter whose
 * tenant is at its cap is skipped by the dispatch (not reordered), so FIFO holds among the eligible ones.
 */
export class WaitQueue<W extends { tenant: string }> {
  private items: W[] = [];

  push(w: W): number {
    this.items.push(w);
    return this.items.length - 1;
  }

  remove(w: W): boolean {
    const i = this.items.indexOf(w);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  position(w: W): number {
    return this.items.indexOf(w);
  }

  get length(): number {
    return this.items.length;
  }

  /** A copy in FIFO order. */
  entries(): W[] {
    return [...this.items];
  }
}
