import { describe, expect, it } from "vitest";
import { Gate } from "../../cluster-agent/sandbox-server/gate.ts";

// The exec server's bound on reads running at once (file-routes.ts): listings hold a directory's
// entries while they build a page, so a tenant's burst of them must queue, not pile up in memory.

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("Gate", () => {
  it("runs at most its limit at once and starts the waiters in arrival order", async () => {
    const gate = new Gate(2);
    const started: number[] = [];
    const ends = Array.from({ length: 5 }, () => deferred());
    let running = 0;
    let most = 0;
    const all = ends.map((d, i) =>
      gate.run(async () => {
        started.push(i);
        running++;
        most = Math.max(most, running);
        await d.promise;
        running--;
        return i;
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    expect(gate.load).toEqual({ running: 2, waiting: 3 });
    ends[1]!.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    // A newcomer arriving now waits behind the ones already queued.
    const late = gate.run(async () => {
      started.push(99);
      return 99;
    });
    for (const d of ends) d.resolve();
    expect(await Promise.all([...all, late])).toEqual([0, 1, 2, 3, 4, 99]);
    expect(started).toEqual([0, 1, 2, 3, 4, 99]);
    expect(most).toBe(2);
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it("gives the slot back when a task fails", async () => {
    const gate = new Gate(1);
    const failing = gate.run(async () => {
      throw new Error("boom");
    });
    const next = gate.run(async () => "ran");
    await expect(failing).rejects.toThrow("boom");
    expect(await next).toBe("ran");
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it("refuses a limit that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new Gate(bad)).toThrow(/positive integer/);
  });
});
