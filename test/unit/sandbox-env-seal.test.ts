/**
 * A sandbox's default env on its Lease is sealed (cluster-agent/sandboxes/env-seal.ts): the
 * annotation never holds the values, and it opens only with the pool token's key, for that sandbox.
 */
import { describe, expect, it } from "vitest";
import { SandboxEnvSeal } from "../../cluster-agent/sandboxes/env-seal.ts";

const ENV = { API_KEY: "sk-live-7Hq2", DB_URL: "postgres://app:hunter2@db/prod" };

describe("SandboxEnvSeal", () => {
  it("round-trips, and the sealed text holds none of the values", () => {
    const seal = new SandboxEnvSeal("pool-token-1");
    const sealed = seal.seal(ENV, "sb.local.default.a");
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    for (const v of ["sk-live-7Hq2", "hunter2", "API_KEY", "DB_URL"]) expect(sealed).not.toContain(v);
    expect(seal.open(sealed, "sb.local.default.a")).toEqual({ ok: true, value: ENV });
    // A fresh IV every time: equal envs do not look equal on the Leases.
    expect(seal.seal(ENV, "sb.local.default.a")).not.toBe(sealed);
  });

  it("opens only with the same pool token, for the same sandbox, unaltered", () => {
    const sealed = new SandboxEnvSeal("pool-token-1").seal(ENV, "sb.local.default.a");
    const code = (r: { ok: boolean; error?: { code: string } }) => (r.ok ? "ok" : r.error?.code);
    expect(code(new SandboxEnvSeal("pool-token-2").open(sealed, "sb.local.default.a"))).toBe(
      "sandbox_failed",
    );
    expect(code(new SandboxEnvSeal("pool-token-1").open(sealed, "sb.local.default.b"))).toBe(
      "sandbox_failed",
    );
    const [v, iv, body] = sealed.split(".");
    const flipped = `${v}.${iv}.${(body as string).slice(0, -2)}${(body as string).endsWith("AA") ? "BA" : "AA"}`;
    expect(code(new SandboxEnvSeal("pool-token-1").open(flipped, "sb.local.default.a"))).toBe(
      "sandbox_failed",
    );
    expect(code(new SandboxEnvSeal("pool-token-1").open(JSON.stringify(ENV), "sb.local.default.a"))).toBe(
      "sandbox_failed",
    );
  });
});
