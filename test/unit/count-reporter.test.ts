import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

// scripts/count-reporter.mjs behind `npm test`'s closing line, run by a real vitest on a fixture
// with one test of each kind: the counts must be vitest's own (an `it.fails` that failed as it
// documents is an expected fail, not a pass).

const REPO = fileURLToPath(new URL("../../", import.meta.url));
mkdirSync(join(REPO, ".scratch"), { recursive: true });
// Inside the repository, so the fixture resolves vitest from its node_modules.
const dir = mkdtempSync(join(REPO, ".scratch", "count-reporter-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("npm test's count reporter", () => {
  it("counts passed, failed, expected fail, skipped and todo as vitest does", async () => {
    writeFileSync(join(dir, "vitest.config.mjs"), "export default { test: { include: ['*.check.mjs'] } };\n");
    writeFileSync(
      join(dir, "fixture.check.mjs"),
      [
        'import { expect, it } from "vitest";',
        'it("passes", () => expect(1).toBe(1));',
        'it("fails", () => expect(1).toBe(2));',
        'it.fails("fails as documented", () => expect(1).toBe(2));',
        'it.skip("skipped", () => {});',
        'it.todo("todo");',
      ].join("\n"),
    );
    const counts = join(dir, "counts.json");
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(
        join(REPO, "node_modules", ".bin", "vitest"),
        [
          "run",
          "--root",
          dir,
          "--reporter=default",
          `--reporter=${join(REPO, "scripts", "count-reporter.mjs")}`,
        ],
        { cwd: dir, env: { ...process.env, PI_TEST_COUNTS: counts }, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      p.stdout.on("data", (d: Buffer) => (out += d.toString()));
      p.stderr.on("data", (d: Buffer) => (out += d.toString()));
      p.on("close", (code) => resolve({ code, out }));
    });
    expect(r.code, r.out).toBe(1);
    expect(JSON.parse(readFileSync(counts, "utf8"))).toEqual({
      passed: 1,
      failed: 1,
      expectedFail: 1,
      skipped: 1,
      todo: 1,
      unhandledErrors: 0,
    });
  }, 60_000);
});
