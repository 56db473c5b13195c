/**
 * The folder import rules as data, and the checker that holds the real imports against them.
 * The rules live in docs/architecture.md §2 between `<!-- import-rules -->` markers, as a table:
 * | folder | may import (folders) | may import (packages) |. A file is judged by the most specific
 * folder that contains it; its own folder is always allowed. A folder entry ending in
 * "(types only)" allows only type imports (erased at run time). `node:*` allows Node built-ins.
 */
import { dirname, join, normalize } from "node:path";

export interface ImportRule {
  folder: string;
  folders: Array<{ prefix: string; typesOnly: boolean }>;
  packages: string[];
}

export interface FoundImport {
  spec: string;
  typeOnly: boolean;
}

const cell = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim().replace(/`/g, ""))
    .filter((x) => x !== "" && x !== "—" && x !== "-");

export function parseImportRules(markdown: string): ImportRule[] {
  const m = /<!-- import-rules:begin -->([\s\S]*?)<!-- import-rules:end -->/.exec(markdown);
  if (!m?.[1]) throw new Error("docs/architecture.md has no <!-- import-rules:begin --> table");
  const rules: ImportRule[] = [];
  for (const line of m[1].split("\n")) {
    const cols = line.split("|").slice(1, -1);
    if (cols.length !== 3) continue;
    const folder = cols[0]!.trim().replace(/`/g, "");
    if (folder === "folder" || /^-+$/.test(folder)) continue;
    rules.push({
      folder,
      folders: cell(cols[1]!).map((f) => ({
        prefix: f.replace(/\s*\(types only\)$/, ""),
        typesOnly: f.endsWith("(types only)"),
      })),
      packages: cell(cols[2]!),
    });
  }
  return rules;
}

const covers = (prefix: string, path: string) =>
  prefix.endsWith("/") ? path.startsWith(prefix) : path === prefix;

export function ruleFor(rules: ImportRule[], file: string): ImportRule | undefined {
  let best: ImportRule | undefined;
  for (const r of rules)
    if (covers(r.folder, file) && (!best || r.folder.length > best.folder.length)) best = r;
  return best;
}

const CLAUSE = String.raw`(?:type\s+)?(?:\*\s+as\s+[\w$]+|\*|\{[^}]*\}|[\w$]+(?:\s*,\s*(?:\{[^}]*\}|\*\s+as\s+[\w$]+))?)`;
const STATIC = new RegExp(String.raw`^\s*(import|export)\s+(${CLAUSE})\s+from\s+["']([^"']+)["']`, "gm");
const BARE = /^\s*import\s+["']([^"']+)["']/gm;
const DYNAMIC = /(typeof\s+)?\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Every module specifier a source file names, in order, with whether it is erased at run time. */
export function importsOf(source: string): FoundImport[] {
  // Line comments would otherwise hide or fake an import; block comments are left, as a `/*` in a
  // string (a glob) would fool a naive stripper and no import hides in one in this repository.
  const src = source.replace(/^\s*\/\/.*$/gm, "");
  const found: Array<FoundImport & { at: number }> = [];
  for (const m of src.matchAll(STATIC)) {
    const clause = m[2] ?? "";
    found.push({ spec: m[3]!, typeOnly: /^type\s/.test(clause), at: m.index ?? 0 });
  }
  for (const m of src.matchAll(BARE)) found.push({ spec: m[1]!, typeOnly: false, at: m.index ?? 0 });
  for (const m of src.matchAll(DYNAMIC)) {
    // `typeof import("x")` and `import("x").T` in a type position are erased; `await import` is not.
    const after = src.slice((m.index ?? 0) + m[0].length, (m.index ?? 0) + m[0].length + 2);
    const typeOnly = Boolean(m[1]) || /^\.[A-Z]/.test(after);
    found.push({ spec: m[2]!, typeOnly, at: m.index ?? 0 });
  }
  return found.sort((a, b) => a.at - b.at).map(({ spec, typeOnly }) => ({ spec, typeOnly }));
}

const packageOf = (spec: string) =>
  spec.startsWith("node:")
    ? "node:*"
    : spec.startsWith("@")
      ? spec.split("/").slice(0, 2).join("/")
      : (spec.split("/")[0] ?? spec);

/** The rule each import of `file` breaks, as sentences; empty when all are allowed. */
export function violationsOf(rules: ImportRule[], file: string, imports: FoundImport[]): string[] {
  const rule = ruleFor(rules, file);
  if (!rule) return [`${file}: no import rule covers this folder`];
  const out: string[] = [];
  const allowedText = () =>
    `${rule.folder} may import ${[...rule.folders.map((f) => f.prefix + (f.typesOnly ? " (types only)" : "")), ...rule.packages].join(", ") || "nothing else"}`;
  for (const imp of imports) {
    if (imp.spec.startsWith(".")) {
      const target = normalize(join(dirname(file), imp.spec));
      if (covers(rule.folder, target)) continue;
      const grant = rule.folders.find((f) => covers(f.prefix, target));
      if (grant && (!grant.typesOnly || imp.typeOnly)) continue;
      out.push(
        `${file} imports ${target}${grant?.typesOnly ? " at run time (types only)" : ""}: ${allowedText()}`,
      );
    } else {
      const pkg = packageOf(imp.spec);
      if (rule.packages.includes(pkg) || (imp.typeOnly && rule.packages.includes(`${pkg} (types only)`)))
        continue;
      out.push(`${file} imports package ${pkg}: ${allowedText()}`);
    }
  }
  return out;
}
