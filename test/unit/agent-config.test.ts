import { describe, expect, it } from "vitest";
import { loadConfig, tenantShare } from "../../cluster-agent/config.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { MIN_AGENT_ENV } from "../support/agent-env.ts";

// The agent's process settings beyond the pool: relay keys, the tunnel, the model.
describe("agent config: relay, tunnel and model settings", () => {
  it("has no tunnel without EDGE_URL and reads both keys when it is set", async () => {
    const off = loadConfig({ ...MIN_AGENT_ENV });
    expect(off.ok && off.value.edgeUrl).toBeUndefined();
    const agent = await generateSigningKeyPair("a");
    const relay = await generateSigningKeyPair("r");
    const on = loadConfig({
      ...MIN_AGENT_ENV,
      EDGE_URL: "https://edge.test",
      AGENT_KEY: JSON.stringify(agent.privateJwk),
      RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [relay.publicJwk] }),
    });
    expect(on.ok).toBe(true);
    if (!on.ok) return;
    expect(on.value.agentKey?.kid).toBe("a");
    expect(on.value.relayPublicKeys?.keys[0]?.kid).toBe("r");
  });

  it("names what is wrong: EDGE_URL without AGENT_KEY, a public key as AGENT_KEY, bad JSON", async () => {
    const noKey = loadConfig({ ...MIN_AGENT_ENV, EDGE_URL: "https://edge.test" });
    expect(noKey.ok || noKey.error.message).toContain("AGENT_KEY");
    const kp = await generateSigningKeyPair("a");
    const publicOnly = loadConfig({
      ...MIN_AGENT_ENV,
      EDGE_URL: "https://edge.test",
      AGENT_KEY: JSON.stringify(kp.publicJwk),
    });
    expect(publicOnly.ok || publicOnly.error.message).toContain("AGENT_KEY has the wrong shape");
    const badJson = loadConfig({ ...MIN_AGENT_ENV, RELAY_PUBLIC_KEYS: "{nope" });
    expect(badJson.ok || badJson.error.message).toContain("RELAY_PUBLIC_KEYS is not valid JSON");
    const emptySet = loadConfig({ ...MIN_AGENT_ENV, RELAY_PUBLIC_KEYS: '{"keys":[]}' });
    expect(emptySet.ok).toBe(false);
  });

  it("keeps a missing model as a reason for chat, not a startup failure", () => {
    const cfg = loadConfig({ ...MIN_AGENT_ENV });
    expect(cfg.ok).toBe(true);
    if (!cfg.ok) return;
    expect(cfg.value.model.ok).toBe(false);
    if (!cfg.value.model.ok) expect(cfg.value.model.error.code).toBe("model_not_configured");
    const bad = loadConfig({ ...MIN_AGENT_ENV, CHAT_MAX_TOOL_ROUNDS: "many" });
    expect(bad.ok).toBe(false);
  });

  it("serves metrics on METRICS_PORT (9464), never on AGENT_PORT", () => {
    const def = loadConfig({ ...MIN_AGENT_ENV });
    expect(def.ok && [def.value.agentPort, def.value.metricsPort]).toEqual([8081, 9464]);
    const same = loadConfig({ ...MIN_AGENT_ENV, AGENT_PORT: "9000", METRICS_PORT: "9000" });
    expect(!same.ok && same.error.message).toContain("METRICS_PORT must differ from AGENT_PORT");
    // 0 and 0 are two free ports (tests).
    expect(loadConfig({ ...MIN_AGENT_ENV, AGENT_PORT: "0", METRICS_PORT: "0" }).ok).toBe(true);
  });

  it("refuses to start without relay keys, and without a pool token when the exec server is used", () => {
    const noKeys = loadConfig({ POOL_TOKEN: "t" });
    expect(!noKeys.ok && noKeys.error.message).toContain("RELAY_PUBLIC_KEYS is required");
    const { POOL_TOKEN: _, ...keysOnly } = MIN_AGENT_ENV;
    for (const env of [
      {},
      { RECYCLE: "scrub", EXEC_MODE: "api" },
      { RECYCLE: "reuse-same-tenant", EXEC_MODE: "api" },
      { EXEC_MODE: "pydantic-http" },
    ]) {
      const noToken = loadConfig({ ...keysOnly, ...env });
      expect(!noToken.ok && noToken.error.message).toContain("POOL_TOKEN is required");
    }
    // api exec with replace recycling never calls the exec server: no token needed.
    expect(loadConfig({ ...keysOnly, EXEC_MODE: "api" }).ok).toBe(true);
  });

  it("EXEC_MODE=pydantic-http recycles by replacement only: the contract has no /reset or /inspect", () => {
    const ok = loadConfig({ ...MIN_AGENT_ENV, EXEC_MODE: "pydantic-http" });
    expect(ok.ok && [ok.value.execMode, ok.value.recycle]).toEqual(["pydantic-http", "replace"]);
    for (const recycle of ["scrub", "reuse-same-tenant"]) {
      const r = loadConfig({ ...MIN_AGENT_ENV, EXEC_MODE: "pydantic-http", RECYCLE: recycle });
      expect(!r.ok && r.error.message).toContain("EXEC_MODE=pydantic-http allows only RECYCLE=replace");
    }
    const bad = loadConfig({ ...MIN_AGENT_ENV, EXEC_MODE: "pydantic" });
    expect(!bad.ok && bad.error.message).toContain("EXEC_MODE");
  });
});

describe("agent config: a tenant's share of the pool", () => {
  it("is max(POOL_SIZE, pct % of POOL_MAX_PODS), off at 100 % and when it would be the whole pool", () => {
    expect(tenantShare(8, 64, 75)).toBe(48);
    expect(tenantShare(40, 64, 50)).toBe(40);
    expect(tenantShare(8, 64, 100)).toBe(0);
    // POOL_SIZE = POOL_MAX_PODS: a tenant's share would be every pod, so there is no share rule and
    // a waiter gets queue_timeout (waiting for the pool), not tenant_lease_limit.
    expect(tenantShare(2, 2, 75)).toBe(0);
    const env = loadConfig({ ...MIN_AGENT_ENV, POOL_SIZE: "4", POOL_MAX_PODS: "10" });
    expect(env.ok && env.value.tenantShareLeases).toBe(8);
  });
});

describe("agent config: the egress proxy", () => {
  it("is off by default: no proxy, no network for sandboxes", () => {
    const c = loadConfig({ ...MIN_AGENT_ENV });
    expect(c.ok && c.value.egress).toBeUndefined();
  });

  it("on: port 3128, the built-in forbidden ranges plus the deployment's, what sandboxes dial", () => {
    const c = loadConfig({
      ...MIN_AGENT_ENV,
      EGRESS: "on",
      POD_IP: "10.2.0.5",
      EGRESS_FORBIDDEN_CIDRS: " 203.0.113.0/24, 2001:db8::/32 ",
    });
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.value.egress).toMatchObject({
      port: 3128,
      podIp: "10.2.0.5",
      proxyUrl: undefined,
      maxConnectionsPerSandbox: 64,
      maxBytesPerSandbox: undefined,
      allowAnyHost: false,
    });
    expect([c.value.secretsNamespace, c.value.maxSecretsPerTenant]).toEqual(["pi-sandbox-system", 32]);
    const any = loadConfig({
      ...MIN_AGENT_ENV,
      EGRESS: "on",
      POD_IP: "10.2.0.5",
      EGRESS_ALLOW_ANY_HOST: "on",
    });
    expect(any.ok && any.value.egress?.allowAnyHost).toBe(true);
    expect(loadConfig({ ...MIN_AGENT_ENV, EGRESS_ALLOW_ANY_HOST: "yes" }).ok).toBe(false);
    expect(loadConfig({ ...MIN_AGENT_ENV, SECRETS_NAMESPACE: "Not_A_Label" }).ok).toBe(false);
    const capped = loadConfig({
      ...MIN_AGENT_ENV,
      EGRESS: "on",
      POD_IP: "10.2.0.5",
      EGRESS_MAX_BYTES_PER_SANDBOX: "1048576",
    });
    expect(capped.ok && capped.value.egress?.maxBytesPerSandbox).toBe(1048576);
    expect(c.value.egress?.forbidden).toEqual(
      expect.arrayContaining(["169.254.0.0/16", "127.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"]),
    );
  });

  it("names what is wrong: no address for sandboxes to dial, a bad CIDR, a proxy URL that is not http://host:port", () => {
    const noIp = loadConfig({ ...MIN_AGENT_ENV, EGRESS: "on" });
    expect(noIp.ok || noIp.error.message).toMatch(/POD_IP.*EGRESS_PROXY_URL/);
    const badCidr = loadConfig({
      ...MIN_AGENT_ENV,
      EGRESS: "on",
      POD_IP: "10.2.0.5",
      EGRESS_FORBIDDEN_CIDRS: "10.0.0.0",
    });
    expect(badCidr.ok || badCidr.error.message).toMatch(
      /EGRESS_FORBIDDEN_CIDRS.*"10\.0\.0\.0" is not a CIDR/,
    );
    const badUrl = loadConfig({ ...MIN_AGENT_ENV, EGRESS: "on", EGRESS_PROXY_URL: "https://proxy.test" });
    expect(badUrl.ok || badUrl.error.message).toMatch(/EGRESS_PROXY_URL/);
    expect(loadConfig({ ...MIN_AGENT_ENV, EGRESS: "yes" }).ok).toBe(false);
  });
});
