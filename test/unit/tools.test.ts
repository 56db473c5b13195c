import { describe, expect, it } from "vitest";
import { AppError, ok } from "../../shared/errors.ts";
import {
  CHAT_TOOLS,
  editFile,
  inputJsonSchema,
  listFiles,
  parseToolArgs,
  readFile,
  runInSandbox,
} from "../../shared/tools/definitions.ts";
import { applyEdit, FILE_CAPS, isBinary, numberedLines } from "../../shared/tools/file-text.ts";
import { ToolPathSchema, workspaceRelative } from "../../shared/tools/paths.ts";
import { EXEC_CAPS, execAnswer, runSandboxTool, type ToolBackend } from "../../shared/tools/run-tool.ts";

// The tool definitions shared by chat and MCP, against an in-memory workspace (the port, not a
// project module: the real backends are tested through the edge in test/e2e).
function memoryBackend(files: Map<string, Uint8Array>): ToolBackend {
  return {
    exec: async () => {
      throw new Error("not used");
    },
    async read(path, { maxBytes }) {
      const bytes = files.get(path);
      if (!bytes) return { ok: false, error: new AppError("not_found", path) };
      return ok({
        kind: "file" as const,
        size: bytes.length,
        ...(bytes.length <= maxBytes ? { bytes } : {}),
      });
    },
    async write(path, bytes) {
      files.set(path, bytes);
      return ok({ size: bytes.length });
    },
    async list() {
      return ok({
        entries: [...files].map(([path, b]) => ({ path, type: "file" as const, size: b.length })),
        truncated: false,
      });
    },
  };
}
const signal = new AbortController().signal;
const enc = (s: string) => new TextEncoder().encode(s);

describe("tool definitions", () => {
  it("export JSON Schema inputs with required fields and descriptions", () => {
    expect(CHAT_TOOLS.map((t) => t.name)).toEqual([
      "run_in_sandbox",
      "read_file",
      "write_file",
      "edit_file",
      "list_files",
    ]);
    const s = inputJsonSchema(editFile.input) as {
      type: string;
      required: string[];
      properties: Record<string, { type: string; description?: string }>;
    };
    expect(s.type).toBe("object");
    expect(s.required.sort()).toEqual(["new_string", "old_string", "path"]);
    expect(s.properties.replace_all?.type).toBe("boolean");
    expect(s.properties.path?.description).toMatch(/workspace/);
    expect("$schema" in s).toBe(false);
    const r = inputJsonSchema(runInSandbox.input) as { properties: Record<string, { maximum?: number }> };
    expect(r.properties.timeout_seconds?.maximum).toBe(900);
  });

  it("parse model arguments: broken JSON and bad fields are sentences, null means absent", () => {
    const broken = parseToolArgs(readFile, "{path:");
    expect(broken.ok).toBe(false);
    if (!broken.ok) expect(broken.error).toMatch(/not valid JSON/);
    const bad = parseToolArgs(readFile, JSON.stringify({ path: "../etc/passwd" }));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/path: .*'\.\.'/);
    const nulls = parseToolArgs(readFile, JSON.stringify({ path: "a.txt", offset: null }));
    expect(nulls).toEqual({ ok: true, value: { path: "a.txt" } });
  });

  it("confine paths to /workspace", () => {
    for (const p of ["/etc/passwd", "/workspacex/a", "a/../../b", "..", ""]) {
      expect(ToolPathSchema.safeParse(p).success, p).toBe(false);
    }
    for (const p of ["a.txt", "/workspace", "/workspace/src/x.ts", "./b"]) {
      expect(ToolPathSchema.safeParse(p).success, p).toBe(true);
    }
    expect(workspaceRelative("/workspace/src//x.ts")).toBe("src/x.ts");
    expect(workspaceRelative("./b")).toBe("b");
    expect(workspaceRelative("/workspace")).toBe("");
  });
});

describe("file text", () => {
  it("numbers lines and pages with offset/limit, naming the true line count", () => {
    const text = `${Array.from({ length: 10 }, (_, i) => `line ${i + 1}`).join("\n")}\n`;
    const page = numberedLines(text, 3, 2);
    expect(page.content).toBe("     3\tline 3\n     4\tline 4");
    expect(page.totalLines).toBe(10);
    expect(page.truncated).toBe(true);
    expect(page.notice).toMatch(/lines 3-4 of 10.*offset=5/);
    const all = numberedLines(text);
    expect(all.truncated).toBe(false);
    expect(all.notice).toBeUndefined();
    expect(all.endLine).toBe(10);
  });

  it("caps one read by bytes with a notice", () => {
    const line = "x".repeat(1000);
    const text = Array.from({ length: 200 }, () => line).join("\n");
    const page = numberedLines(text);
    expect(new TextEncoder().encode(page.content).length).toBeLessThanOrEqual(FILE_CAPS.readBytes);
    expect(page.endLine).toBeLessThan(200);
    expect(page.notice).toMatch(/byte cap/);
  });

  it("detects binary", () => {
    expect(isBinary(new Uint8Array([0x68, 0, 0x69]))).toBe(true);
    expect(isBinary(new Uint8Array([0xff, 0xfe, 0x41]))).toBe(true);
    expect(isBinary(enc("héllo\n"))).toBe(false);
  });

  it("edits: exactly one match, or replace_all; missing and ambiguous fail", () => {
    expect(applyEdit("a b a", { oldString: "b", newString: "$&c", replaceAll: false })).toEqual({
      ok: true,
      value: { text: "a $&c a", replacements: 1 },
    });
    const amb = applyEdit("a b a", { oldString: "a", newString: "z", replaceAll: false });
    expect(amb.ok === false && amb.error.code).toBe("edit_not_unique");
    expect(applyEdit("a b a", { oldString: "a", newString: "z", replaceAll: true })).toEqual({
      ok: true,
      value: { text: "z b z", replacements: 2 },
    });
    const missing = applyEdit("a b a", { oldString: "q", newString: "z", replaceAll: false });
    expect(missing.ok === false && missing.error.code).toBe("edit_not_found");
  });
});

describe("runSandboxTool", () => {
  it("write, read, edit, list through one backend; an ambiguous edit writes nothing", async () => {
    const files = new Map<string, Uint8Array>();
    const b = memoryBackend(files);
    const opts = { defaultTimeoutSeconds: 30, signal };
    const w = await runSandboxTool(
      "write_file",
      { path: "/workspace/a.py", content: "x = 1\nx = 1\n" },
      b,
      opts,
    );
    expect(w.ok && w.value.text).toBe("wrote 12 bytes to /workspace/a.py");
    const r = await runSandboxTool("read_file", { path: "a.py" }, b, opts);
    expect(r.ok && r.value.text).toBe("     1\tx = 1\n     2\tx = 1");
    const amb = await runSandboxTool(
      "edit_file",
      { path: "a.py", old_string: "x = 1", new_string: "y" },
      b,
      opts,
    );
    expect(amb.ok === false && amb.error.code).toBe("edit_not_unique");
    expect(new TextDecoder().decode(files.get("a.py"))).toBe("x = 1\nx = 1\n");
    const e = await runSandboxTool(
      "edit_file",
      { path: "a.py", old_string: "x = 1", new_string: "y", replace_all: true },
      b,
      opts,
    );
    expect(e.ok && e.value.structured).toEqual({
      path: "/workspace/a.py",
      replacements: 2,
      bytes_written: 4,
    });
    files.set("bin", new Uint8Array([1, 0, 2]));
    const rb = await runSandboxTool("read_file", { path: "bin" }, b, opts);
    expect(rb.ok && rb.value.text).toBe("/workspace/bin: binary file, 3 bytes (not shown)");
    const l = await runSandboxTool("list_files", {}, b, opts);
    expect(l.ok && l.value.text).toBe("a.py\tfile\t4\nbin\tfile\t3");
    expect(listFiles.name).toBe("list_files");
  });

  it("caps command output for the model, keeping the true size", () => {
    const big = "a".repeat(EXEC_CAPS.headBytes + EXEC_CAPS.tailBytes + 100);
    const a = execAnswer({
      exitCode: 0,
      signal: null,
      timedOut: false,
      truncated: false,
      stdout: big,
      stderr: "",
      stdoutBytes: big.length,
      stderrBytes: 0,
      durationMs: 3,
    });
    expect(a.structured.truncated).toBe(true);
    expect(a.structured.stdout_bytes).toBe(big.length);
    expect(a.text).toMatch(new RegExp(`wrote ${big.length} bytes.*100 bytes omitted`));
    expect(a.text).toMatch(/stderr: \(empty\)/);
  });
});
