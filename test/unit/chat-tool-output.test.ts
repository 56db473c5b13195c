import { describe, expect, it } from "vitest";
import { toolResultText } from "../../shared/tools/exec-text.ts";
import { truncateForModel } from "../../shared/tools/truncate.ts";

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

describe("truncateForModel", () => {
  it("leaves short output alone", () => {
    const r = truncateForModel("hello\n", { totalBytes: 6, headBytes: 10, tailBytes: 10 });
    expect(r).toEqual({ text: "hello\n", truncated: false });
  });

  it("keeps head and tail with a notice carrying the true byte counts", () => {
    const text = `${"A".repeat(100)}${"m".repeat(1000)}${"Z".repeat(100)}`;
    const r = truncateForModel(text, { totalBytes: 1200, headBytes: 100, tailBytes: 100 });
    expect(r.truncated).toBe(true);
    const [head, notice, tail] = r.text.split("\n");
    expect(head).toBe("A".repeat(100));
    expect(tail).toBe("Z".repeat(100));
    expect(notice).toContain("1200 bytes");
    expect(notice).toContain("1000 bytes omitted");
    expect(notice).toContain("first 100");
    expect(notice).toContain("last 100");
  });

  it("says when the sandbox captured less than the command wrote", () => {
    const captured = "x".repeat(500);
    const r = truncateForModel(captured, { totalBytes: 5_000_000, headBytes: 100, tailBytes: 100 });
    expect(r.text).toContain("5000000 bytes");
    expect(r.text).toContain("only the first 500 bytes were captured");
    const small = truncateForModel("abc", { totalBytes: 2_000_000, headBytes: 100, tailBytes: 100 });
    expect(small.truncated).toBe(true);
    expect(small.text.startsWith("abc\n")).toBe(true);
    expect(small.text).toContain("2000000 bytes");
  });

  it("never splits a multi-byte character", () => {
    const text = "é".repeat(300) + "€".repeat(300); // 2-byte and 3-byte characters
    const r = truncateForModel(text, { totalBytes: bytes(text), headBytes: 101, tailBytes: 101 });
    expect(r.text).not.toContain("\uFFFD");
    const [head, , tail] = r.text.split("\n");
    expect(head).toBe("é".repeat(50));
    expect(tail).toBe("€".repeat(33));
  });
});

describe("toolResultText", () => {
  const outcome = {
    exitCode: 0,
    signal: null,
    timedOut: false,
    truncated: false,
    stdout: "hi\n",
    stderr: "",
    stdoutBytes: 3,
    stderrBytes: 0,
    durationMs: 12.4,
  };

  it("reports exit code, duration and both streams", () => {
    const r = toolResultText(outcome, { headBytes: 100, tailBytes: 100, timeoutSeconds: 30 });
    expect(r.truncated).toBe(false);
    expect(r.text).toBe("exit_code: 0\nduration_ms: 12\nstdout:\nhi\n\nstderr: (empty)");
  });

  it("reports a timeout and a kill, and marks shortened output as truncated", () => {
    const r = toolResultText(
      {
        ...outcome,
        exitCode: null,
        signal: "SIGKILL",
        timedOut: true,
        stdout: "y".repeat(1000),
        stdoutBytes: 1000,
      },
      { headBytes: 10, tailBytes: 10, timeoutSeconds: 5 },
    );
    expect(r.truncated).toBe(true);
    expect(r.text).toContain("exit_code: none (killed by SIGKILL)");
    expect(r.text).toContain("timed_out: true (the command was killed after 5 s)");
    expect(r.text).toContain("the command wrote 1000 bytes");
  });

  it("passes on the sandbox's own truncation flag", () => {
    const r = toolResultText(
      { ...outcome, truncated: true },
      { headBytes: 100, tailBytes: 100, timeoutSeconds: 30 },
    );
    expect(r.truncated).toBe(true);
  });
});
