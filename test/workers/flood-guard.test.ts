import { createExecutionContext, env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { createApp } from "../../edge/app.ts";
import { depsFromEnv, type EdgeDeps } from "../../edge/deps.ts";
import { BASE, expectError } from "./support.ts";

describe("flood guard (per client IP, before auth)", () => {
  it("refuses an address over its limit with 429 before looking at the token", async () => {
    const seen: string[] = [];
    const real = depsFromEnv(env);
    const deps: EdgeDeps = {
      ...real,
      floodGuard: {
        async allow(key) {
          seen.push(key);
          return seen.filter((k) => k === key).length <= 2;
        },
      },
    };
    const app = createApp(() => deps);
    const call = (ip: string) =>
      app.fetch(
        new Request(`${BASE}/v1/exec`, { method: "POST", headers: { "CF-Connecting-IP": ip } }),
        env,
        createExecutionContext(),
      );
    await expectError(await call("203.0.113.7"), 401, "unauthenticated");
    await expectError(await call("203.0.113.7"), 401, "unauthenticated");
    const limited = await call("203.0.113.7");
    expect(limited.headers.get("Retry-After")).toBe("60");
    await expectError(limited, 429, "rate_limited");
    await expectError(await call("198.51.100.1"), 401, "unauthenticated");
    expect(seen).toEqual(["203.0.113.7", "203.0.113.7", "203.0.113.7", "198.51.100.1"]);
  });

  it("the real binding is wired and lets ordinary traffic through", async () => {
    expect((await env.FLOOD_GUARD.limit({ key: "probe" })).success).toBe(true);
  });

  it("a misconfigured env fails closed with the error envelope", async () => {
    const app = createApp(depsFromEnv);
    // The error log is part of the behaviour (the operator's only detail): captured and checked, not printed.
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const res = await app.fetch(
        new Request(`${BASE}/healthz`),
        { ...env, REGIONS: "" },
        createExecutionContext(),
      );
      const e = await expectError(res, 500, "internal");
      expect(logged).toHaveBeenCalledTimes(1);
      const line = JSON.parse(String(logged.mock.calls[0]?.[0]));
      expect(line).toMatchObject({ level: "error", requestId: e.requestId, path: "/healthz" });
      expect(line.error).toContain("edge misconfigured: REGIONS");
    } finally {
      logged.mockRestore();
    }
  });
});
