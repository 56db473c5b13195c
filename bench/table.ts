import type { BenchReport, BenchRow } from "./types.ts";

/** Two decimals under 10 ms, one above; blank when absent or not a number. */
export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "";
  return Math.abs(ms) < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

/** p50 as a multiple of the floor's p50 ("" when there is no positive floor). */
export function timesFloor(row: BenchRow): string {
  if (row.floorKind === "cost") return "-";
  if (row.floorP50Ms === undefined || !(row.floorP50Ms > 0) || !Number.isFinite(row.p50Ms)) return "";
  return `${(row.p50Ms / row.floorP50Ms).toFixed(1)}x`;
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export const TABLE_HEADER = [
  "benchmark",
  "n",
  "p50 ms",
  "p99 ms",
  "floor",
  "floor p50",
  "floor p99",
  "x floor",
  "compare (published, other machines)",
  "notes",
] as const;

/** A Markdown table: one row per figure, next to its floor and the published anchor. */
export function renderTable(rows: readonly BenchRow[]): string {
  const body = rows.map((r) =>
    [
      r.name,
      String(r.n),
      fmtMs(r.p50Ms),
      fmtMs(r.p99Ms),
      r.floorName ?? "",
      fmtMs(r.floorP50Ms),
      fmtMs(r.floorP99Ms),
      timesFloor(r),
      r.compare ?? "",
      Object.entries(r.extra ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    ].map(cell),
  );
  const header = [...TABLE_HEADER];
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(" / ");

/** The machine line (with its load: numbers from a loaded machine are noisy), then the table. */
export function renderReport(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    `machine: ${m.cpus} x ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}, ${m.platform}, ${m.at}`,
    `load average (1/5/15 min): ${load(m.loadAtStart)} at start, ${load(m.loadAtEnd)} at end` +
      (Math.max(...m.loadAtStart, ...m.loadAtEnd) > m.cpus * 0.75
        ? ` (busy for ${m.cpus} cores: expect noisy, pessimistic numbers)`
        : ""),
    "",
    renderTable(report.results),
  ];
  for (const f of report.failures ?? []) lines.push(`FAILED ${f}`);
  return lines.join("\n");
}

export const README_START = "<!-- bench:latest:start -->";
export const README_END = "<!-- bench:latest:end -->";

/** `doc` with the text between the two markers replaced by `table` (unchanged if a marker is missing). */
export function replaceLatestTable(doc: string, table: string): string {
  const a = doc.indexOf(README_START);
  const b = doc.indexOf(README_END);
  if (a < 0 || b < a) return doc;
  return `${doc.slice(0, a + README_START.length)}\n${table.trim()}\n${doc.slice(b)}`;
}
