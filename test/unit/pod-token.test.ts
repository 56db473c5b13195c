import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";

describe("podExecToken", () => {
  it("is deterministic and is HMAC-SHA256(pool token, 'pi-sandbox-exec:ns/pod') in base64url", () => {
    const a = podExecToken("pool-secret", "pi-sandbox", "sandbox-abcde");
    expect(podExecToken("pool-secret", "pi-sandbox", "sandbox-abcde")).toBe(a);
    const expected = createHmac("sha256", "pool-secret")
      .update("pi-sandbox-exec:pi-sandbox/sandbox-abcde")
      .digest("base64url");
    expect(a).toBe(expected);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toContain("pool-secret");
  });

  it("differs per pod, per namespace and per pool token", () => {
    const base = podExecToken("pool-secret", "pi-sandbox", "sandbox-abcde");
    expect(podExecToken("pool-secret", "pi-sandbox", "sandbox-abcdf")).not.toBe(base);
    expect(podExecToken("pool-secret", "other-ns", "sandbox-abcde")).not.toBe(base);
    expect(podExecToken("pool-secret-2", "pi-sandbox", "sandbox-abcde")).not.toBe(base);
    // The separator keeps namespace and name apart: "a/bc" and "ab/c" are different pods.
    expect(podExecToken("p", "a", "bc")).not.toBe(podExecToken("p", "ab", "c"));
  });
});
