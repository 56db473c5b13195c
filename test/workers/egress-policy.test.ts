import { describe, expect, it } from "vitest";
import { decide, parseEgressPolicy } from "../../shared/egress-policy.ts";

// The edge validates the same policy the proxy enforces: the module must run in workerd as it
// does in Node (BigInt address math, regex lookbehind, no node:net).
describe("egress policy in workerd", () => {
  it("parses, refuses with the entry named, and decides", () => {
    const bad = parseEgressPolicy({ network: { allow: ["*", "ok.test", "[::1]:99999"] } });
    expect(bad.ok ? [] : bad.issues).toEqual([
      'network.allow[0] "*": allows every destination, which this deployment does not permit',
      'network.allow[2] "[::1]:99999": port "99999" is not 1-65535',
    ]);
    const r = parseEgressPolicy({
      network: { allow: ["*.example.com", "10.0.0.0/8:5432", "[2001:db8::/32]:443"] },
    });
    if (!r.ok) throw new Error(r.issues.join("; "));
    expect(decide(r.policy, "a.example.com", 443).allowed).toBe(true);
    expect(decide(r.policy, "10.2.3.4", 5432).allowed).toBe(true);
    expect(decide(r.policy, "2001:db8::1", 443).allowed).toBe(true);
    expect(decide(r.policy, "example.com", 443).allowed).toBe(false);
  });
});
