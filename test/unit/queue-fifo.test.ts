import { describe, expect, it } from "vitest";
import { WaitQueue } from "../../cluster-agent/leases/wait-queue.ts";

const w = (tenant: string, id: string) => ({ tenant, id });

// The tenant-cap rule (skip a capped tenant, FIFO among the others) is the dispatch's: see lease-manager.test.ts.
describe("WaitQueue", () => {
  it("keeps arrival order and removes from the middle", () => {
    const q = new WaitQueue<ReturnType<typeof w>>();
    const a = w("t1", "a");
    const b = w("t1", "b");
    const c = w("t2", "c");
    q.push(a);
    q.push(b);
    q.push(c);
    expect(q.entries().map((x) => x.id)).toEqual(["a", "b", "c"]);
    expect(q.remove(b)).toBe(true);
    expect(q.remove(b)).toBe(false);
    expect(q.entries().map((x) => x.id)).toEqual(["a", "c"]);
    expect(q.position(c)).toBe(1);
    expect(q.length).toBe(2);
  });
});
