// The command text EXEC_MODE=pydantic-http sends to a contract server (cluster-agent/exec/
// contract-exec.ts), run here by the real /bin/sh as such a server would: exit status, bytes and
// quoting survive, and the output is bounded without cutting the command short.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { framedCommand, shellQuote } from "../../cluster-agent/exec/contract-exec.ts";

/** What a contract server does with the command: `sh -c`, stdout and stderr together. */
function serve(command: string): { code: number | null; bytes: Buffer } {
  const r = spawnSync("/bin/sh", ["-c", `${command} 2>&1`], { encoding: "buffer", timeout: 10_000 });
  return { code: r.status, bytes: Buffer.from(r.stdout.toString("latin1"), "base64") };
}

describe("pydantic-http: the framed command", () => {
  it("keeps the exit status and every byte of the combined output", () => {
    const r = serve(framedCommand(["/bin/sh", "-c", "printf '\\377\\000A'; printf E >&2; exit 7"], 1024));
    expect(r.code).toBe(7);
    expect([...r.bytes].sort()).toEqual([0x00, 0x41, 0x45, 0xff].sort());
  });

  it("pipes stdin in exactly", () => {
    const stdin = Uint8Array.from({ length: 256 }, (_, i) => i);
    const r = serve(framedCommand(["/bin/sh", "-c", "cat; echo $?"], 4096, stdin));
    expect(r.bytes).toEqual(Buffer.concat([Buffer.from(stdin), Buffer.from("0\n")]));
  });

  it("passes any argument as one word: quotes, $, backticks, newlines", () => {
    const nasty = 'it\'s "$HOME" `id` $(id)\nline2 \\ *';
    const r = serve(framedCommand(["/bin/sh", "-c", 'printf %s "$1"', "x", nasty], 1024));
    expect(r.bytes.toString()).toBe(nasty);
    expect(shellQuote("'")).toBe(`''\\'''`);
  });

  it("returns at most maxBytes + 1 bytes, and the command still runs to its end", () => {
    // tr would die of SIGPIPE (status 141) if the output were cut by closing the pipe.
    const r = serve(framedCommand(["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; exit $?"], 1000));
    expect(r.code).toBe(0);
    expect(r.bytes.byteLength).toBeGreaterThan(1000);
    expect(r.bytes.byteLength).toBeLessThanOrEqual(1002);
    expect(r.bytes.toString()).toMatch(/^a+$/);
  });
});
