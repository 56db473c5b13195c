import { describe, expect, it } from "vitest";
import { WaitQueue } from "../../cluster-agent/leases/wait-queue.ts";

const w = (tenant: string, id: string) => ({ tenant, id });

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

  it("skips a capped tenant without reordering the others (FIFO among eligible)", () => {
    const q = new WaitQueue<ReturnType<typeof w>>();
    for (const [t, id] of [
      ["hog", "1"],
      ["hog", "2"],
      ["small", "3"],
      ["other", "4"],
    ] as const)
      q.push(w(t, id));
    expect(q.firstEligible((t) => t !== "hog")?.id).toBe("3");
    expect(q.firstEligible(() => true)?.id).toBe("1");
    expect(q.firstEligible(() => false)).toBeUndefined();
  });

  it("drain empties the queue", () => {
    const q = new WaitQueue<ReturnType<typeof w>>();
    q.push(w("a", "1"));
    expect(q.drain()).toHaveLength(1);
    expect(q.length).toBe(0);
  });
});
