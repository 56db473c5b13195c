/**
 * No merge-conflict markers in any tracked text file: a marker in Markdown or a comment compiles and
 * lints, so nothing else would catch it.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const TEXT = /\.(ts|mts|mjs|js|json|md|py|toml|yaml|yml|sh|txt|html|css)$/;

describe("repository", () => {
  it("has no merge-conflict markers in tracked text files", () => {
    const files = execFileSync("git", ["ls-files"], { cwd: ROOT, encoding: "utf8" })
      .split("\n")
      .filter((f) => TEXT.test(f));
    const marked: string[] = [];
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(join(ROOT, f), "utf8");
      } catch {
        continue; // listed but deleted in the working tree
      }
      const lines = text.split("\n");
      lines.forEach((line, i) => {
        if (/^(<{7} |>{7} |={7}$)/.test(line)) marked.push(`${f}:${i + 1}`);
      });
    }
    expect(marked).toEqual([]);
  });
});
