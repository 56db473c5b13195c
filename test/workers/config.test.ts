import { env, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { isLocalHost, loadConfig } from "../../edge/config.ts";
import type { TunnelDO } from "../../edge/durable/tunnel.ts";
import { TEST_ADMIN_SUBJECT } from "./fixtures/test-keys.ts";
import { connectAgent, expectError, waitForAgents } from "./support.ts";

describe("edge config", () => {
  it("parses wrangler.toml's vars with the test project's keys", () => {
    const cfg = loadConfig(env);
    expect(cfg.ok).toBe(true);
    if (!cfg.ok) return;
    expect(cfg.config.environment).toBe("test");
    expect(cfg.config.regions).toEqual(["eu-1", "us-1"]);
    expect(cfg.config.jwt.algorithms).toEqual(["RS256", "ES256", "EdDSA"]);
    expect(cfg.config.quota).toEqual({ burst: 20, refillPerSecond: 0.2 });
    expect(cfg.config.jwt.adminSubjects).toEqual([TEST_ADMIN_SUBJECT]);
  });

  it("admin is nobody unless configured; ADMIN_* are validated", () => {
    const none = loadConfig({ ...env, ADMIN_SUBJECTS: undefined });
    expect(none.ok && none.config.jwt).toMatchObject({ adminSubjects: [], adminAudience: undefined });
    const both = loadConfig({ ...env, ADMIN_SUBJECTS: " ops-1 , ops-2 ", ADMIN_AUDIENCE: "pi-admin" });
    expect(both.ok && both.config.jwt).toMatchObject({
      adminSubjects: ["ops-1", "ops-2"],
      adminAudience: "pi-admin",
    });
    const empty = loadConfig({ ...env, ADMIN_AUDIENCE: "" });
    expect(empty.ok || empty.message).toContain("ADMIN_AUDIENCE");
  });

  it("refuses the committed test keys (kid test-…) in every environment but test", () => {
    for (const environment of ["production", "staging", "dev"]) {
      const cfg = loadConfig({ ...env, ENVIRONMENT: environment });
      expect(cfg.ok || cfg.message).toContain("test keys");
    }
    // An unset ENVIRONMENT is production.
    const unset = loadConfig({ ...env, ENVIRONMENT: undefined });
    expect(unset.ok || unset.message).toContain("test keys");
  });

  it("refuses incomplete region keys and a missing key set", () => {
    const missing = loadConfig({ ...env, REGIONS: "eu-1,ap-1" });
    expect(missing.ok || missing.message).toContain("ap-1");
    const noKeys = loadConfig({ ...env, JWT_JWKS: undefined });
    expect(noKeys.ok || noKeys.message).toContain("JWT_JWKS");
    const badAlg = loadConfig({ ...env, JWT_ALGORITHMS: "HS256" });
    expect(badAlg.ok).toBe(false);
  });

  it("agent keys' cluster bindings (clusters) are validated", () => {
    const key = { kty: "OKP", crv: "Ed25519", x: "YA43WrGT8YH5GLegJDutCZhR0RcX9kkD0qMh3yxS6B0", kid: "k" };
    const keys = (clusters: unknown) =>
      JSON.stringify({ "eu-1": { keys: [{ ...key, clusters }] }, "us-1": { keys: [key] } });
    expect(loadConfig({ ...env, AGENT_PUBLIC_KEYS: keys(["a", "b-2"]) }).ok).toBe(true);
    for (const bad of [[], ["Bad.Name"], "a", [1]]) {
      expect(loadConfig({ ...env, AGENT_PUBLIC_KEYS: keys(bad) }).ok, JSON.stringify(bad)).toBe(false);
    }
  });
});

describe("a dev/test edge answers only on local hostnames", () => {
  it("421 host_not_allowed under a public name, before auth or anything else", async () => {
    for (const host of [
      "pi-sandbox-edge.someone.workers.dev",
      "edge.example.com",
      "10.0.0.5",
      "localhost.evil.com",
    ]) {
      await expectError(await SELF.fetch(`https://${host}/healthz`), 421, "host_not_allowed");
    }
    for (const host of ["localhost:8787", "127.0.0.1:8787", "[::1]:8787", "edge.test"]) {
      expect((await SELF.fetch(`http://${host}/healthz`)).status, host).toBe(200);
    }
  });

  it("isLocalHost: loopback, *.localhost, *.test and LOCAL_HOSTS only", () => {
    expect(isLocalHost("LOCALHOST", [])).toBe(true);
    expect(isLocalHost("app.localhost", [])).toBe(true);
    expect(isLocalHost("127.3.2.1", [])).toBe(true);
    expect(isLocalHost("[::1]", [])).toBe(true);
    expect(isLocalHost("172.18.0.1", [])).toBe(false);
    expect(isLocalHost("172.18.0.1", ["172.18.0.1"])).toBe(true);
    expect(isLocalHost("127.0.0.1.nip.io", [])).toBe(false);
    expect(isLocalHost("x.workers.dev", [])).toBe(false);
    const cfg = loadConfig({ ...env, LOCAL_HOSTS: "172.18.0.1, Host.Docker.Internal" });
    expect(cfg.ok && cfg.config.localHosts).toEqual(["172.18.0.1", "host.docker.internal"]);
  });
});

describe("TunnelDO state that must survive hibernation", () => {
  it("keeps agent identity and heartbeat capacity in the socket attachment", async () => {
    const ns = env.TUNNEL;
    const agent = await connectAgent("us-1", () => {}, "agent-hib");
    await waitForAgents(ns as unknown as DurableObjectNamespace, "us-1", 1);
    agent.heartbeat({ ready: 3, leased: 1, queued: 0, poolSize: 4 });
    const stub = ns.get(ns.idFromName("us-1"));
    let attached: unknown = null;
    for (let i = 0; i < 100; i++) {
      attached = await runInDurableObject(stub, (_instance: TunnelDO, state) =>
        state.getWebSockets().map((ws) => ws.deserializeAttachment()),
      );
      if (JSON.stringify(attached).includes('"ready":3')) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(attached).toEqual([
      expect.objectContaining({
        agentId: "agent-hib",
        region: "us-1",
        capacity: { ready: 3, leased: 1, queued: 0, poolSize: 4 },
      }),
    ]);
    agent.close();
    await waitForAgents(ns as unknown as DurableObjectNamespace, "us-1", 0);
  });
});
