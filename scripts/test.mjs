// `npm test`: every check the project has, in the order a failure is cheapest to find.
//   system packages → typecheck (Node and Workers programs) → lint → all vitest projects.
// `npm test -- <vitest args>` skips straight to vitest with those arguments.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureSystemDeps } from "./system-deps.mjs";

const bin = (name) => join("node_modules", ".bin", name);
const run = (label, cmd, args) => {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { stdio: "inherit" });
  console.log(
    `── ${label}: ${r.status === 0 ? "ok" : "FAILED"} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
  return r.status === 0;
};

if (!ensureSystemDeps({ purposes: ["stack", "test", "browser"], entry: "npm test" })) process.exit(1);

const extra = process.argv.slice(2);
if (extra.length === 0) {
  if (!run("typecheck (node)", bin("tsc"), ["-p", "tsconfig.json", "--noEmit"])) process.exit(1);
  if (!run("typecheck (workers)", bin("tsc"), ["-p", "edge/tsconfig.json", "--noEmit"])) process.exit(1);
  if (!run("lint", bin("biome"), ["check", "."])) process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), "pi-vitest-"));
const countsFile = join(dir, "counts.json");
process.env.PI_TEST_COUNTS = countsFile;
const ok = run("vitest", bin("vitest"), [
  "run",
  "--reporter=default",
  "--reporter=./scripts/count-reporter.mjs",
  ...extra,
]);
try {
  const c = JSON.parse(readFileSync(countsFile, "utf8"));
  // The plain closing line CI reads to know how many tests ran, counted as vitest's summary counts.
  const parts = [`${c.passed} passed`, `${c.failed} failed`, `${c.skipped + c.todo} skipped`];
  if (c.expectedFail > 0) parts.push(`${c.expectedFail} expected fail`);
  console.log(parts.join(", "));
  if (c.passed + c.failed + c.expectedFail + c.skipped + c.todo === 0) {
    console.error("no test ran");
    process.exit(1);
  }
} catch {
  console.error("vitest wrote no counts");
  process.exit(1);
}
rmSync(dir, { recursive: true, force: true });
process.exit(ok ? 0 : 1);
