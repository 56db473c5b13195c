// `npm run bench [-- suite ...]`: runs the benchmark suites, prints one table, writes
// bench/results/latest.json as {machine, results} (and latest.md, the same table). Every figure
// is shown next to its floor (the raw operation underneath) and, where one exists, a published
// figure of another system.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureSystemDeps } from "../scripts/system-deps.mjs";
import { anchorFor } from "./anchors.ts";
import { canonicalRow } from "./names.ts";
import { roundMs } from "./stats.ts";
import { renderReport, replaceLatestTable } from "./table.ts";
import type { BenchReport, BenchRow, BenchSuite, MachineInfo } from "./types.ts";
import { killAllStacksNow } from "./with-stack.ts";

const here = dirname(fileURLToPath(import.meta.url));

/** Suites are loaded lazily so one that is missing or broken does not stop the others. */
const SUITES: Record<string, () => Promise<BenchSuite>> = {
  acquire: async () => (await import("./acquire.ts")).suite,
  exec: async () => (await import("./exec.ts")).suite,
  edge: async () => (await import("./edge.ts")).suite,
  load: async () => (await import("./load.ts")).suite,
  mcp: async () => (await import("./mcp.ts")).suite,
  sandboxes: async () => (await import("./sandboxes.ts")).suite,
  processes: async () => (await import("./processes.ts")).suite,
  "port-links": async () => (await import("./port-links.ts")).suite,
  "pod-start": async () => (await import("./pod-start.ts")).suite,
  latency: async () => (await import("./latency.ts")).suite,
  elastic: async () => (await import("./elastic.ts")).suite,
  egress: async () => (await import("./egress.ts")).suite,
  "command-cost": async () => (await import("./command-cost.ts")).suite,
};

const load = () => loadavg().map((x) => Number(x.toFixed(2)));

/** Stable names, the anchor to compare with, and the 1-minute load when the suite started. */
export function finishRows(rows: readonly BenchRow[], load1AtStart: number): BenchRow[] {
  return rows.map((raw) => {
    const row = canonicalRow(raw);
    const compare = row.compare ?? anchorFor(row.name);
    const r = (ms: number | undefined) => (ms === undefined ? undefined : roundMs(ms));
    return {
      ...row,
      p50Ms: roundMs(row.p50Ms),
      p99Ms: roundMs(row.p99Ms),
      ...(row.floorP50Ms !== undefined ? { floorP50Ms: r(row.floorP50Ms) } : {}),
      ...(row.floorP99Ms !== undefined ? { floorP99Ms: r(row.floorP99Ms) } : {}),
      ...(compare ? { compare } : {}),
      extra: { ...row.extra, load1: load1AtStart },
    };
  });
}

async function main() {
  if (!ensureSystemDeps({ purposes: ["stack"], entry: "npm run bench" })) process.exit(1);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    // Prepended: Miniflare's exit hook (registered later) exits the process as soon as it runs.
    process.prependOnceListener(signal, () => {
      process.stderr.write(`bench: ${signal}, stopping the stacks\n`);
      killAllStacksNow();
      process.exit(130);
    });
  }
  const args = process.argv.slice(2).filter((a) => a !== "--");
  const runsAt = args.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 1;
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write(`bench: --runs needs a whole number ≥ 1, not ${args[runsAt + 1]}\n`);
    process.exit(2);
  }
  const wanted = runsAt >= 0 ? args.filter((_, i) => i !== runsAt && i !== runsAt + 1) : args;
  const names = wanted.length ? wanted : Object.keys(SUITES);
  const loadAtStart = load();
  const at = new Date().toISOString();
  const results: BenchRow[] = [];
  const failures: string[] = [];
  for (const name of names) {
    const loadSuite = SUITES[name];
    if (!loadSuite) {
      failures.push(`${name}: no such suite (have: ${Object.keys(SUITES).join(", ")})`);
      continue;
    }
    const t0 = Date.now();
    const load1 = load()[0] ?? 0;
    process.stderr.write(`bench ${name}: starting (load1 ${load1})\n`);
    try {
      const suite = await loadSuite();
      const rows = finishRows(await suite.run({ runs }), load1);
      results.push(...rows);
      process.stderr.write(
        `bench ${name}: ${rows.length} rows in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      failures.push(`${name}: ${msg}`);
      process.stderr.write(
        `bench ${name}: FAILED after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${msg}\n`,
      );
    }
  }
  const machine: MachineInfo = {
    node: process.version,
    platform: `${platform()} ${release()}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    at,
    loadAtStart,
    loadAtEnd: load(),
  };
  const report: BenchReport = { machine, results, ...(failures.length ? { failures } : {}) };
  const text = renderReport(report);
  console.log(text);
  const outDir = join(here, "results");
  mkdirSync(outDir, { recursive: true });
  // A partial run (some suites only) must not overwrite the full table.
  const base = wanted.length ? `partial-${names.join("-")}` : "latest";
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, `${base}.md`), `${text}\n`);
  console.log(`\nwrote ${join(outDir, `${base}.json`)}`);
  const readme = join(here, "README.md");
  if (!wanted.length && existsSync(readme)) {
    writeFileSync(readme, replaceLatestTable(readFileSync(readme, "utf8"), text));
    console.log(`updated the table in ${readme}`);
  }
  process.exit(failures.length ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
