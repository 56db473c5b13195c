import { describe, expect, it } from "vitest";
import { anchorFor } from "../../bench/anchors.ts";
import { canonicalName, canonicalRow } from "../../bench/names.ts";
import { finishRows } from "../../bench/run.ts";
import {
  fmtMs,
  README_END,
  README_START,
  renderReport,
  renderTable,
  replaceLatestTable,
  TABLE_HEADER,
  timesFloor,
} from "../../bench/table.ts";
import type { BenchRow } from "../../bench/types.ts";

const row = (over: Partial<BenchRow> = {}): BenchRow => ({
  name: "e2e_exec",
  n: 150,
  p50Ms: 21.04,
  p99Ms: 52,
  floorName: "pod exec",
  floorP50Ms: 2.5,
  floorP99Ms: 7.65,
  extra: { rawSpawnP50Ms: 6.17, mode: "scrub" },
  ...over,
});

describe("bench table", () => {
  it("formats milliseconds with 2 decimals below 10 and 1 above; blank for missing", () => {
    expect(fmtMs(2.456)).toBe("2.46");
    expect(fmtMs(21.04)).toBe("21.0");
    expect(fmtMs(undefined)).toBe("");
    expect(fmtMs(Number.NaN)).toBe("");
  });

  it("divides by a bounding floor only", () => {
    expect(timesFloor(row())).toBe("8.4x");
    expect(timesFloor(row({ floorP50Ms: undefined }))).toBe("");
    expect(timesFloor(row({ floorP50Ms: 0 }))).toBe("");
    expect(timesFloor(row({ floorKind: "cost" }))).toBe("-");
  });

  it("renders one aligned Markdown row per figure with its floor and notes", () => {
    const lines = renderTable([row(), row({ name: "edge|overhead", n: 3, extra: {} })]).split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]?.startsWith(`| ${TABLE_HEADER[0]}`)).toBe(true);
    expect(lines[1]).toMatch(/^\|-+(\|-+)+\|$/);
    const cells = (lines[2] ?? "").split(" | ").map((c) => c.replace(/^\| /, "").trim());
    expect(cells.slice(0, 8)).toEqual([
      "e2e_exec",
      "150",
      "21.0",
      "52.0",
      "pod exec",
      "2.50",
      "7.65",
      "8.4x",
    ]);
    expect(lines[2]).toContain("rawSpawnP50Ms=6.17 mode=scrub");
    // A pipe in a cell is escaped so the table keeps its columns; every line has the same width.
    expect(lines[3]).toContain("edge\\|overhead");
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
  });

  it("states the machine's load and flags a busy machine", () => {
    const machine = {
      node: "v20",
      platform: "linux",
      cpus: 2,
      cpuModel: "cpu",
      memGiB: 8,
      at: "now",
      loadAtStart: [4.2, 3, 2],
      loadAtEnd: [1, 1, 1],
    };
    const text = renderReport({ machine, results: [row()], failures: ["load: boom"] });
    expect(text).toContain("4.20 / 3.00 / 2.00 at start");
    expect(text).toContain("noisy");
    expect(text).toContain("FAILED load: boom");
    const calm = renderReport({
      machine: { ...machine, loadAtStart: [0.2, 0.2, 0.2], loadAtEnd: [0.3, 0.3, 0.3] },
      results: [],
    });
    expect(calm).not.toContain("noisy");
  });
});

describe("row names and anchors", () => {
  it("gives prose rows from other suites stable names and keeps the prose", () => {
    expect(canonicalName("acquire+release, free pool of 512")).toBe("acquire_release/pool=512");
    expect(canonicalName("lease PUT (floor)")).toBe("lease_put");
    expect(canonicalName("exec `true` (http mode)")).toBe("exec_http");
    expect(canonicalName("exec `true` (api mode, pods/exec)")).toBe("exec_api");
    expect(canonicalName("acquire under contention (3 replicas, 8 pods)")).toBe(
      "acquire_conflicts/3-replicas",
    );
    expect(canonicalName("e2e_exec")).toBe("e2e_exec");
    const r = canonicalRow(row({ name: "acquire+release, free pool of 8", extra: { poolSize: 8 } }));
    expect(r.name).toBe("acquire_release/pool=8");
    expect(r.extra).toEqual({ what: "acquire+release, free pool of 8", poolSize: 8 });
  });

  it("attaches the published anchor and the load to each row", () => {
    expect(anchorFor("acquire_release/pool=64")).toContain("92");
    expect(anchorFor("something_else")).toBeUndefined();
    const [r] = finishRows([row({ name: "acquire+release, free pool of 64" })], 3.5);
    expect(r?.compare).toContain("agent-sandbox");
    expect(r?.extra?.load1).toBe(3.5);
    const [rounded] = finishRows([row({ p50Ms: 1.2188029999, floorP99Ms: 7.2371829 })], 1);
    expect(rounded?.p50Ms).toBe(1.219);
    expect(rounded?.floorP99Ms).toBe(7.237);
    const [own] = finishRows([row({ compare: "mine" })], 1);
    expect(own?.compare).toBe("mine");
  });
});

describe("README table", () => {
  it("replaces only the text between the markers", () => {
    const doc = `# t\nbefore\n${README_START}\nold table\n${README_END}\nafter\n`;
    const out = replaceLatestTable(doc, "| new |\n");
    expect(out).toBe(`# t\nbefore\n${README_START}\n| new |\n${README_END}\nafter\n`);
    expect(replaceLatestTable(out, "| newer |")).toContain(`${README_START}\n| newer |\n${README_END}`);
    expect(replaceLatestTable("no markers", "x")).toBe("no markers");
  });
});
