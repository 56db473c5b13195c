/**
 * The per-replica FIFO of callers waiting for a pod. Order is arrival order; a waiter whose
 * tenant is at its cap is skipped (not reordered), so FIFO holds among the eligible ones.
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

  has(w: W): boolean {
    return this.items.includes(w);
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

  /** The oldest waiter whose tenant may take another lease now. */
  firstEligible(eligible: (tenant: string) => boolean): W | undefined {
    return this.items.find((w) => eligible(w.tenant));
  }

  drain(): W[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
