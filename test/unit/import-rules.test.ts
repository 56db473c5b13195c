import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { importsOf, parseImportRules, ruleFor, violationsOf } from "../support/import-rules.ts";

// The folder rules of docs/architecture.md §2 ("Import rules"), checked against the real imports of
// every product file. The table in the document is the rule: change it there, with the reason.
const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), "../.."));
const CHECKED = [
  "shared",
  "edge",
  "cluster-agent",
  "sdk",
  "devcluster",
  "devstack",
  "bench",
  "k8s",
  "scripts",
];
const SKIP_DIRS = new Set(["node_modules", "dist", "results", ".wrangler", "__pycache__"]);

function productFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (SKIP_DIRS.has(name)) continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith(".d.ts")) out.push(relative(ROOT, p));
    }
  };
  for (const top of CHECKED) walk(join(ROOT, top));
  return out.sort();
}

const rules = parseImportRules(readFileSync(join(ROOT, "docs/architecture.md"), "utf8"));

describe("import rules (docs/architecture.md §2)", () => {
  it("has a rule for every product folder", () => {
    expect(rules.length).toBeGreaterThan(10);
    const unruled = productFiles().filter((f) => ruleFor(rules, f) === undefined);
    expect(unruled).toEqual([]);
  });

  it("every product file imports only what its folder's rule allows", () => {
    const broken: string[] = [];
    for (const file of productFiles()) {
      const src = readFileSync(join(ROOT, file), "utf8");
      for (const v of violationsOf(rules, file, importsOf(src))) broken.push(v);
    }
    expect(broken).toEqual([]);
  });

  // The checker itself must be able to fail: each wrong import below is one the rules forbid.
  it("catches a wrong import, naming the rule it broke", () => {
    const check = (file: string, src: string) => violationsOf(rules, file, importsOf(src));
    expect(check("cluster-agent/leases/x.ts", 'import { a } from "../pool/controller.ts";')[0]).toMatch(
      /cluster-agent\/leases\/x\.ts imports cluster-agent\/pool\/controller\.ts: cluster-agent\/leases\/ may import/,
    );
    expect(check("edge/routes/x.ts", 'import { a } from "../../cluster-agent/config.ts";')).toHaveLength(1);
    expect(check("shared/x.ts", 'import { readFileSync } from "node:fs";')).toHaveLength(1);
    expect(check("shared/x.ts", 'export * from "../edge/app.ts";')).toHaveLength(1);
    // The installable client reaches nothing outside its package, not even types.
    expect(check("sdk/typescript/src/x.ts", 'import { LIMITS } from "../../../shared/api.ts";')).toHaveLength(
      1,
    );
    expect(
      check("sdk/typescript/src/x.ts", 'import type { Sandbox } from "../../../shared/api.ts";'),
    ).toHaveLength(1);
    expect(check("sdk/typescript/bin/x.mjs", 'await import("../dist/cli.js");')).toEqual([]);
    expect(
      check("cluster-agent/chat/x.ts", 'const m = await import("../sandboxes/service.ts");'),
    ).toHaveLength(1);
    expect(check("cluster-agent/pool-state/x.ts", 'import { z } from "openai";')).toHaveLength(1);
  });

  it("reads every form of import", () => {
    const src = [
      'import a from "pkg-a";',
      'import * as b from "pkg-b";',
      "import {\n  c,\n  type D,\n} from 'pkg-c';",
      'import type { E } from "pkg-e";',
      'export { f } from "pkg-f";',
      'export * from "pkg-g";',
      'export type { H } from "pkg-h";',
      'import "pkg-i";',
      'const j = await import("pkg-j");',
      'type K = typeof import("pkg-k");',
      '// import x from "not-an-import";',
    ].join("\n");
    expect(importsOf(src).map((i) => `${i.spec}${i.typeOnly ? " (type)" : ""}`)).toEqual([
      "pkg-a",
      "pkg-b",
      "pkg-c",
      "pkg-e (type)",
      "pkg-f",
      "pkg-g",
      "pkg-h (type)",
      "pkg-i",
      "pkg-j",
      "pkg-k (type)",
    ]);
  });
});
