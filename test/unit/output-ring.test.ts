import { describe, expect, it } from "vitest";
import { OutputRing } from "../../cluster-agent/sandbox-server/output-ring.ts";

// The ring against the obvious model (keep every byte, slice the tail): random chunk sizes around
// the capacity, including chunks larger than the whole ring, and reads at every kind of offset.
describe("OutputRing", () => {
  it("holds exactly the last `capacity` bytes and counts what a late reader lost", () => {
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const capacity of [1, 7, 64, 1000]) {
      const ring = new OutputRing(capacity);
      let all = Buffer.alloc(0);
      for (let step = 0; step < 400; step++) {
        const chunk = Buffer.from(Array.from({ length: rand(capacity * 2 + 2) }, () => rand(256)));
        ring.write(chunk);
        all = Buffer.concat([all, chunk]);
        expect(ring.end).toBe(all.length);
        expect(ring.start).toBe(Math.max(0, all.length - capacity));
        const since = rand(all.length + 1);
        const max = rand(capacity + 2) + 1;
        const r = ring.read(since, max);
        const from = Math.max(since, ring.start);
        expect(r.offset).toBe(from);
        expect(r.dropped).toBe(from - since);
        expect(r.data.equals(all.subarray(from, Math.min(all.length, from + max)))).toBe(true);
        expect(r.next).toBe(from + r.data.length);
      }
    }
  });

  it("reads nothing at its end and the held bytes from inside it", () => {
    const ring = new OutputRing(1 << 20);
    expect(ring.read(0, 10)).toMatchObject({ offset: 0, next: 0, dropped: 0 });
    ring.write(Buffer.from("abc"));
    expect(ring.read(3, 10).data.length).toBe(0);
    expect(ring.read(1, 10).data.toString()).toBe("bc");
  });
});
