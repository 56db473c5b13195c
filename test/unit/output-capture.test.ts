import { describe, expect, it } from "vitest";
import { completeUtf8Length, OutputCapture } from "../../cluster-agent/exec/output-capture.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("OutputCapture", () => {
  it("keeps everything under the cap, per stream, and counts true bytes", () => {
    const c = new OutputCapture(10);
    expect(c.push("stdout", bytes("hello ")).byteLength).toBe(6);
    expect(c.push("stderr", bytes("oops")).byteLength).toBe(4);
    expect(c.push("stdout", bytes("world")).byteLength).toBe(4);
    expect(c.push("stdout", bytes("more")).byteLength).toBe(0);
    expect(c.finish()).toEqual({
      stdout: "hello worl",
      stderr: "oops",
      stdoutBytes: 15,
      stderrBytes: 4,
      truncated: true,
    });
  });

  it("is not truncated at exactly the cap", () => {
    const c = new OutputCapture(4);
    c.push("stdout", bytes("abcd"));
    expect(c.finish()).toMatchObject({ stdout: "abcd", stdoutBytes: 4, truncated: false });
  });

  it("takes upstream true counts and truncation flag over what arrived", () => {
    const c = new OutputCapture(100);
    c.push("stdout", bytes("abc"));
    expect(c.finish({ stdoutBytes: 5000, stderrBytes: 0, truncated: true })).toMatchObject({
      stdout: "abc",
      stdoutBytes: 5000,
      truncated: true,
    });
    const d = new OutputCapture(3);
    d.push("stdout", bytes("abc"));
    expect(d.finish({ stdoutBytes: 10, stderrBytes: 0, truncated: false }).truncated).toBe(true);
  });

  it("copies chunks so a reused buffer does not change what was kept", () => {
    const c = new OutputCapture(10);
    const buf = Buffer.from("abc");
    c.push("stdout", buf);
    buf.write("xyz");
    expect(c.finish().stdout).toBe("abc");
  });

  it("drops a character cut in half by the cap instead of emitting U+FFFD", () => {
    const c = new OutputCapture(5);
    c.push("stdout", bytes("abc€x")); // € is 3 bytes: the cap cuts it after 2
    const out = c.finish();
    expect(out.stdout).toBe("abc");
    expect(out.stdoutBytes).toBe(7);
  });
});

describe("completeUtf8Length", () => {
  it("finds the end of the last complete character", () => {
    expect(completeUtf8Length(bytes("abc"))).toBe(3);
    expect(completeUtf8Length(bytes("a€"))).toBe(4);
    expect(completeUtf8Length(bytes("a€").subarray(0, 3))).toBe(1);
    expect(completeUtf8Length(bytes("😀").subarray(0, 3))).toBe(0);
    expect(completeUtf8Length(bytes("😀"))).toBe(4);
    expect(completeUtf8Length(new Uint8Array(0))).toBe(0);
  });
});
