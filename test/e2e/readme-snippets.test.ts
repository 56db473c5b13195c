import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTsClient, type SdkStack, startSdkStack } from "./sdk-stack.ts";
import { runProcess } from "./stack-helpers.ts";

// Every code snippet in README.md runs as printed against a running local stack, the way a reader
// would run it from a fresh clone:
// - `sh` blocks run in bash (-e: every line must succeed; a JSON error body fails it too);
// - `ts`/`python` blocks start with a comment naming their file and the command that runs it
//   (`// app.mts — run from the repository root: npx tsx app.mts`): the test saves the block
//   under that name and runs that command;
// - a block the test must not run (it starts the stack itself, say) is preceded by
//   `<!-- snippet-test: skip — why -->`; `json` and unlabelled blocks (config, diagrams) are not code.
// The only change to a snippet: `localhost:8787`/`127.0.0.1:8787` become the test stack's edge,
// which listens on a free port. The environment is what the README tells the reader to export:
// TENANT_A and ADMIN (printed by `npm start`), PI_SANDBOX_URL and PI_SANDBOX_TOKEN.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const README = readFileSync(join(REPO, "README.md"), "utf8");

interface Snippet {
  line: number;
  lang: string;
  code: string;
  skip?: string;
}

function snippets(markdown: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    let prev = start - 1;
    while (prev >= 0 && lines[prev]!.trim() === "") prev--;
    const skip = /^<!-- snippet-test: skip — (.+) -->$/.exec(lines[prev] ?? "")?.[1];
    out.push({ line: start + 1, lang: open[1]!, code: lines.slice(start + 1, end).join("\n"), skip });
    i = end;
  }
  return out;
}

const RUNNABLE = new Set(["sh", "bash", "ts", "typescript", "python", "py"]);
const all = snippets(README);
const runnable = all.filter((s) => RUNNABLE.has(s.lang));

let sdk: SdkStack;
let scratch: string;
let env: Record<string, string>;

beforeAll(async () => {
  // `npx pi-sandbox` and `import "@pi-sandbox/client"` load the built package, as after `npm run build`.
  await buildTsClient();
  sdk = await startSdkStack("readme-");
  // A scratch directory inside the repository stands in for its root: node resolves packages
  // (tsx, @pi-sandbox/client, the MCP SDK) from the repository's node_modules, npx finds the
  // workspace's `pi-sandbox`, and `sdk` points at the real sdk/ for the Python snippet's PYTHONPATH.
  mkdirSync(join(REPO, ".scratch"), { recursive: true });
  scratch = mkdtempSync(join(REPO, ".scratch", "readme-"));
  symlinkSync(join(REPO, "sdk"), join(scratch, "sdk"));
  const { tokens, edgeUrl } = sdk.stack;
  env = {
    TENANT_A: tokens.tenantA,
    ADMIN: tokens.admin,
    PI_SANDBOX_URL: edgeUrl,
    PI_SANDBOX_TOKEN: tokens.tenantA,
  };
}, 180_000);

afterAll(async () => {
  await sdk?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const bash = (script: string) =>
  runProcess("bash", ["-e", "-o", "pipefail", "-c", script], { cwd: scratch, env, timeoutMs: 180_000 });

const onTestEdge = (code: string) =>
  code.replaceAll(/(?:localhost|127\.0\.0\.1):8787/g, new URL(sdk.stack.edgeUrl).host);

describe("README.md snippets", () => {
  it("every code block is either run here or says why not", () => {
    expect(runnable.length).toBeGreaterThanOrEqual(5);
    for (const s of all) {
      if (RUNNABLE.has(s.lang) || s.lang === "json" || s.lang === "") continue;
      throw new Error(
        `README.md:${s.line}: a \`${s.lang}\` block: the snippet test does not know how to run it`,
      );
    }
  });

  for (const s of runnable) {
    const title = `README.md:${s.line} (${s.lang}) ${s.code.split("\n")[0]!.slice(0, 70)}`;
    if (s.skip) {
      it.skip(`${title} — ${s.skip}`, () => {});
      continue;
    }
    it(`${title} runs as printed`, async () => {
      let script = onTestEdge(s.code);
      if (s.lang !== "sh" && s.lang !== "bash") {
        const how = /^(?:\/\/|#) (\S+) — run from the repository root: (.+)$/.exec(s.code.split("\n")[0]!);
        expect(
          how,
          `README.md:${s.line}: the first line must name the file and the command that runs it`,
        ).not.toBeNull();
        writeFileSync(join(scratch, how![1]!), script);
        script = how![2]!;
      }
      const r = await bash(script);
      expect(r.code, r.out).toBe(0);
      // curl exits 0 on an error status: an error body fails the snippet too.
      expect(r.out).not.toMatch(/"error":\s*\{\s*"code"/);
      expect(r.out).not.toMatch(/Traceback|SandboxApiError|Error \[ERR_/);
    }, 200_000);
  }
});
