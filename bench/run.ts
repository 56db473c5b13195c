// `npm run bench [-- name ...]`: runs the benchmark suites, prints one table, writes
// bench/results/latest.json as {machine, results}. Every figure is shown next to its floor.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchRow, BenchSuite } from "./types.ts";

const here = dirname(fileURLToPath(import.meta.url));

/** Suites are loaded lazily so one that is missing or broken does not stop the others. */
const SUITES: Record<string, () => Promise<BenchSuite>> = {
  acquire: async () => (await import("./acquire.ts")).suite,
  exec: async () => (await import("./exec.ts")).suite,
};

function fmt(ms: number | undefined): string {
  return ms === undefined ? "" : ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

export function renderTable(rows: BenchRow[]): string {
  const header = ["benchmark", "n", "p50 ms", "p99 ms", "floor", "floor p50", "× floor", "notes"];
  const body = rows.map((r) => [
    r.name,
    String(r.n),
    fmt(r.p50Ms),
    fmt(r.p99Ms),
    r.floorName ?? "",
    fmt(r.floorP50Ms),
    r.floorP50Ms ? (r.p50Ms / r.floorP50Ms).toFixed(1) : "",
    Object.entries(r.extra ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(" "),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

async function main() {
  const wanted = process.argv.slice(2);
  const names = wanted.length ? wanted : Object.keys(SUITES);
  const results: BenchRow[] = [];
  const failures: string[] = [];
  for (const name of names) {
    const load = SUITES[name];
    if (!load) {
      failures.push(`${name}: no such suite (have: ${Object.keys(SUITES).join(", ")})`);
      continue;
    }
    const t0 = Date.now();
    try {
      const suite = await load();
      const rows = await suite.run();
      results.push(...rows);
      console.error(`bench ${name}: ${rows.length} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      failures.push(`${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const machine = {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    at: new Date().toISOString(),
  };
  console.log(renderTable(results));
  const out = join(here, "results", "latest.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ machine, results }, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
  for (const f of failures) console.error(`FAILED ${f}`);
  process.exit(failures.length ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
