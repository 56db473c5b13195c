import { describe, expect, it } from "vitest";
import { ListPage, ListSelection, listOrder } from "../../shared/list-page.ts";

const entry = (name: string) => ({ name, type: "file", size: 0, mtime: "2026-01-01T00:00:00.000Z" });

describe("listOrder", () => {
  it("is breadth-first, then component by component (not whole-string order)", () => {
    const names = ["a/b/c", "b", "a-c/x", "a/y", "a", "a-c", "a/b"];
    // Whole-string order would put "a-c/x" before "a/b" ('-' < '/'); by components "a" < "a-c".
    expect([...names].sort(listOrder)).toEqual(["a", "a-c", "b", "a/b", "a/y", "a-c/x", "a/b/c"]);
  });
});

describe("ListPage", () => {
  it("stops at the entry cap and names the last entry as the next cursor", () => {
    const page = new ListPage({ maxEntries: 2, maxBytes: 1 << 20 });
    expect(["a", "b", "c"].map((n) => page.add(entry(n)))).toEqual([true, true, false]);
    expect(page.result()).toMatchObject({ truncated: true, next: "b" });
    expect(page.result().entries.map((e) => e.name)).toEqual(["a", "b"]);
  });

  it("stops at the byte cap (each entry's JSON and a comma)", () => {
    const one = Buffer.byteLength(JSON.stringify(entry("x".repeat(100)))) + 1;
    const page = new ListPage({ maxEntries: 100, maxBytes: one * 3 });
    for (let i = 0; i < 5; i++) page.add(entry(`${i}`.padStart(100, "x")));
    const r = page.result();
    expect(r.entries).toHaveLength(3);
    expect(r.truncated).toBe(true);
    // Multi-byte names count their UTF-8 bytes, not their characters.
    const wide = new ListPage({ maxEntries: 100, maxBytes: one * 3 });
    for (let i = 0; i < 5; i++) wide.add(entry(`${i}`.padStart(100, "é")));
    expect(wide.result().entries.length).toBeLessThan(3);
  });

  it("takes only names after the cursor; a page that is not full is not truncated", () => {
    const page = new ListPage({ maxEntries: 10, maxBytes: 1 << 20, after: "a/b" });
    const names = ["a", "b", "a/b", "a/c", "b/a"].sort(listOrder).filter((n) => page.wanted(n));
    expect(names).toEqual(["a/c", "b/a"]);
    for (const n of names) page.add(entry(n));
    expect(page.result()).toEqual({ entries: names.map(entry), truncated: false });
  });
});

describe("ListSelection", () => {
  it("from entries in any order, keeps exactly the page ListPage makes from them sorted", () => {
    // A deterministic shuffle of 3,000 names at three depths, of varied lengths.
    const names: string[] = [];
    for (let i = 0; i < 1000; i++)
      names.push(`d${i % 7}`, `d${i % 7}/${"n".repeat(i % 50)}${i}`, `d${i % 7}/x/${i}`);
    const unique = [...new Set(names)];
    const shuffled = unique.map((n, i) => ({ n, k: (i * 7919) % 3001 })).sort((a, b) => a.k - b.k);
    for (const limits of [
      { maxEntries: 500, maxBytes: 1 << 20 },
      { maxEntries: 10_000, maxBytes: 20_000 },
      { maxEntries: 10_000, maxBytes: 1 << 20, after: "d3/x/10" },
      { maxEntries: 10_000, maxBytes: 1 << 20 },
    ]) {
      const sel = new ListSelection(limits);
      for (const { n } of shuffled) sel.offer(entry(n));
      const page = new ListPage(limits);
      for (const n of [...unique].sort(listOrder)) if (page.wanted(n) && !page.add(entry(n))) break;
      expect(sel.result(), JSON.stringify(limits)).toEqual(page.result());
    }
  });
});
