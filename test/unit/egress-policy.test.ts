import { describe, expect, it } from "vitest";
import {
  DENY_ALL,
  decide,
  decideAddress,
  type EgressPolicy,
  EgressPolicySchema,
  NetworkPolicySchema,
  networkRefusal,
  parseEgressPolicy,
  parseEntry,
  parseIp,
  secretsFor,
} from "../../shared/egress-policy.ts";

function policy(input: unknown, allowAnyHost = false): EgressPolicy {
  const r = parseEgressPolicy(input, { allowAnyHost });
  if (!r.ok) throw new Error(r.issues.join("; "));
  return r.policy;
}

describe("egress policy: parsing", () => {
  it("accepts names, wildcards, addresses, CIDRs and ports", () => {
    const p = policy({
      network: {
        allow: [
          "pkgs.test",
          "*.example.com",
          "API.Example.org.",
          "10.1.2.3",
          "192.168.0.0/16:8080",
          "2001:db8::/32",
          "[2001:db8::1]:8443",
          "registry.npmjs.org:443",
        ],
      },
    });
    expect(p.allow.map((e) => e.host.kind)).toEqual([
      "name",
      "suffix",
      "name",
      "cidr",
      "cidr",
      "cidr",
      "cidr",
      "name",
    ]);
    expect(p.allow[2]?.host).toEqual({ kind: "name", name: "api.example.org" });
    expect(p.allow[4]?.port).toBe(8080);
    expect(p.allow[6]?.port).toBe(8443);
  });

  it("names the bad entry and says why", () => {
    const r = parseEgressPolicy({
      network: { allow: ["ok.test", "bad..name", "x.test:99999", "foo*.test", "10.0.0.1/8", "*.com"] },
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues).toEqual([
      'network.allow[1] "bad..name": is not a valid host name',
      'network.allow[2] "x.test:99999": port "99999" is not 1-65535',
      'network.allow[3] "foo*.test": `*` is allowed only as the whole leftmost label (`*.example.com`) or alone',
      'network.allow[4] "10.0.0.1/8": has bits set beyond the /8 prefix',
      'network.allow[5] "*.com": a wildcard needs at least two labels after `*.` (e.g. *.example.com)',
    ]);
  });

  it("refuses allow-everything unless the deployment permits it", () => {
    for (const all of ["*", "0.0.0.0/0", "::/0", "*:443"]) {
      const r = parseEgressPolicy({ network: { allow: [all] } });
      expect(r.ok ? [] : r.issues).toEqual([
        `network.allow[0] "${all}": allows every destination, which this deployment does not permit`,
      ]);
      expect(parseEgressPolicy({ network: { allow: [all] } }, { allowAnyHost: true }).ok).toBe(true);
    }
    // Denying everything is always fine.
    expect(parseEgressPolicy({ network: { deny: ["*"] } }).ok).toBe(true);
  });

  it("validates secrets: names, hosts (names only), header, format", () => {
    const ok = policy({ secrets: [{ name: "API_KEY", hosts: ["api.test"] }] });
    expect(ok.secrets[0]).toMatchObject({
      name: "API_KEY",
      header: "authorization",
      format: "Bearer {value}",
    });
    expect(
      policy({ secrets: [{ name: "K", hosts: ["a.test"], header: "X-Api-Key" }] }).secrets[0],
    ).toMatchObject({
      header: "x-api-key",
      format: "{value}",
    });
    const bad = parseEgressPolicy({
      secrets: [
        { name: "1BAD", hosts: ["a.test"] },
        { name: "K", hosts: ["10.0.0.0/8"] },
        { name: "L", hosts: [] },
        { name: "M", hosts: ["a.test"], format: "Bearer x" },
        { name: "N", hosts: ["a.test"], header: "bad header" },
        { name: "https_proxy", hosts: ["a.test"] },
      ],
    });
    expect(bad.ok ? [] : bad.issues).toEqual([
      "secrets[0].name secret names are [A-Za-z_][A-Za-z0-9_]{0,63}",
      'secrets[1].hosts[0] "10.0.0.0/8": a secret is bound to host names only (its TLS is terminated for those names)',
      "secrets[2].hosts Too small: expected array to have >=1 items",
      "secrets[3].format format must contain {value}",
      "secrets[4].header not an HTTP header name",
      "secrets[5].name this name is a variable the sandbox's network needs (proxy, CA bundle)",
    ]);
    expect(EgressPolicySchema.safeParse({ network: { allow: [] }, extra: 1 }).success).toBe(false);
  });

  it("reads IP literals, including IPv4-mapped IPv6 as IPv4", () => {
    expect(parseIp("169.254.169.254")).toEqual({ family: 4, value: 0xa9fea9fen });
    expect(parseIp("::ffff:169.254.169.254")).toEqual({ family: 4, value: 0xa9fea9fen });
    expect(parseIp("::1")).toEqual({ family: 6, value: 1n });
    for (const bad of ["1.2.3", "01.2.3.4", "256.1.1.1", "1::2::3", "12345::", "0x7f.0.0.1"])
      expect(parseIp(bad)).toBeUndefined();
    expect(typeof parseEntry("1:2:3:4:5:6:7:8:9")).toBe("string");
  });
});

describe("egress policy: decide", () => {
  const p = policy({
    network: {
      allow: ["pkgs.test", "*.example.com", "10.0.0.0/8:5432", "api.test:8443", "[2001:db8::/32]:443"],
      deny: ["bad.example.com", "10.9.0.0/16"],
    },
  });

  it("denies everything with no policy", () => {
    expect(decide(DENY_ALL, "pkgs.test", 443)).toMatchObject({ allowed: false, reason: "not_allowed" });
  });

  it("allows exact names on 80/443 only, unless a port is given", () => {
    expect(decide(p, "pkgs.test", 443)).toEqual({ allowed: true, rule: "pkgs.test" });
    expect(decide(p, "PKGS.test.", 80)).toEqual({ allowed: true, rule: "pkgs.test" });
    expect(decide(p, "pkgs.test", 22)).toMatchObject({ allowed: false, reason: "not_allowed" });
    expect(decide(p, "api.test", 8443)).toMatchObject({ allowed: true });
    expect(decide(p, "api.test", 443)).toMatchObject({ allowed: false });
    expect(decide(p, "other.test", 443)).toEqual({
      allowed: false,
      reason: "not_allowed",
      message: "other.test:443 is not in this sandbox's allow list",
    });
  });

  it("matches wildcards on subdomains only, and deny wins", () => {
    expect(decide(p, "a.b.example.com", 443)).toMatchObject({ allowed: true, rule: "*.example.com" });
    expect(decide(p, "example.com", 443)).toMatchObject({ allowed: false });
    expect(decide(p, "evilexample.com", 443)).toMatchObject({ allowed: false });
    expect(decide(p, "bad.example.com", 443)).toEqual({
      allowed: false,
      reason: "denied_by_rule",
      message: 'bad.example.com:443 is denied by "bad.example.com"',
    });
  });

  it("matches CIDRs against IP literals, never against names", () => {
    expect(decide(p, "10.1.2.3", 5432)).toMatchObject({ allowed: true });
    expect(decide(p, "10.9.0.1", 5432)).toMatchObject({ allowed: false, reason: "denied_by_rule" });
    expect(decide(p, "[2001:db8::5]", 443)).toMatchObject({ allowed: true });
    expect(decide(p, "2001:db9::5", 443)).toMatchObject({ allowed: false });
    const mapped = policy({ network: { allow: ["[::ffff:10.0.0.0/104]:443"] } });
    expect(decide(mapped, "10.2.3.4", 443)).toMatchObject({ allowed: true });
    expect(decide(mapped, "::ffff:10.2.3.4", 443)).toMatchObject({ allowed: true });
    expect(decideAddress(p, "10.9.3.3", 443)).toMatchObject({ allowed: false, reason: "denied_by_rule" });
    expect(decideAddress(p, "10.8.3.3", 443)).toMatchObject({ allowed: true });
  });

  it("refuses malformed destinations", () => {
    expect(decide(p, "bad host", 443)).toMatchObject({ allowed: false, reason: "invalid_host" });
    expect(decide(p, "pkgs.test", 0)).toMatchObject({ allowed: false, reason: "invalid_host" });
  });

  it("finds the secrets bound to a host", () => {
    const s = policy({
      network: { allow: ["api.test", "other.test"] },
      secrets: [
        { name: "A", hosts: ["api.test"] },
        { name: "B", hosts: ["*.svc.test:8443"] },
      ],
    });
    expect(secretsFor(s, "api.test", 443).map((b) => b.name)).toEqual(["A"]);
    expect(secretsFor(s, "other.test", 443)).toEqual([]);
    expect(secretsFor(s, "x.svc.test", 8443).map((b) => b.name)).toEqual(["B"]);
    expect(secretsFor(s, "x.svc.test", 443)).toEqual([]);
  });
});

describe("networkRefusal: what a deployment cannot take", () => {
  it("`*` and the all-address CIDRs only with EGRESS_ALLOW_ANY_HOST; anything without a proxy", () => {
    const on = { proxy: true, allowAnyHost: true };
    const off = { proxy: true, allowAnyHost: false };
    for (const all of ["*", "0.0.0.0/0", "::/0", "*:443"]) {
      expect(networkRefusal({ allow: ["ok.test", all] }, off)).toBe(
        `network.allow.1: "${all}": allows every destination, which this deployment does not permit (EGRESS_ALLOW_ANY_HOST)`,
      );
      expect(networkRefusal({ allow: [all] }, on)).toBeUndefined();
    }
    expect(networkRefusal({ allow: ["ok.test"] }, off)).toBeUndefined();
    expect(networkRefusal({ allow: ["ok.test"] }, { proxy: false, allowAnyHost: true })).toMatch(
      /EGRESS=off/,
    );
    expect(
      networkRefusal({ deny: ["*"] } as { allow?: string[] }, { proxy: false, allowAnyHost: false }),
    ).toBeUndefined();
    // The wire schema checks the grammar; the permission is the deployment's.
    expect(NetworkPolicySchema.safeParse({ allow: ["*"] }).success).toBe(true);
    expect(NetworkPolicySchema.safeParse({ allow: ["*.com"] }).success).toBe(false);
  });
});
