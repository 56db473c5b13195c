import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tarCensus } from "../../sdk/typescript/src/tar-limits.ts";

// The archive census of the Agents SDK client, on archives made by the system's own tar (GNU and
// POSIX formats, long names that need extension headers).
const dir = mkdtempSync(join(tmpdir(), "tar-census-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const root = join(dir, "ws");
mkdirSync(join(root, "sub", "x".repeat(120)), { recursive: true });
writeFileSync(join(root, "a.txt"), "hello");
writeFileSync(join(root, "sub", "b.bin"), Buffer.alloc(1000, 7));
writeFileSync(join(root, "sub", "x".repeat(120), "y".repeat(150)), "long");
symlinkSync("a.txt", join(root, "link"));
// ., a.txt, sub, sub/b.bin, sub/xxx…, sub/xxx…/yyy…, link
const MEMBERS = 7;
const BYTES = 5 + 1000 + 4;

const tarOf = (format: string) =>
  new Uint8Array(
    execFileSync("tar", [`--format=${format}`, "-C", root, "-cf", "-", "."], { maxBuffer: 1 << 24 }),
  );

describe("tarCensus", () => {
  it.each(["gnu", "posix", "ustar"])("counts members and content bytes of a %s archive", (format) => {
    if (format === "ustar") {
      // ustar cannot hold the 150-character name; the census of what it can hold still adds up.
      rmSync(join(root, "sub", "x".repeat(120)), { recursive: true });
      expect(tarCensus(tarOf(format))).toEqual({ members: MEMBERS - 2, bytes: BYTES - 4 });
      return;
    }
    expect(tarCensus(tarOf(format))).toEqual({ members: MEMBERS, bytes: BYTES });
  });

  it("refuses what is not a tar archive, and a truncated one", () => {
    expect(() => tarCensus(new TextEncoder().encode("not a tar archive at all"))).toThrow(
      /not a tar archive/,
    );
    expect(() => tarCensus(new Uint8Array())).toThrow(/not a tar archive/);
    const whole = tarOf("gnu");
    expect(() => tarCensus(whole.subarray(0, 700))).toThrow(/truncated/);
  });
});
