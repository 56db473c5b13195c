import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../edge/config.ts";
import type { TunnelDO } from "../../edge/durable/tunnel.ts";
import { connectAgent, waitForAgents } from "./support.ts";

describe("edge config", () => {
  it("parses wrangler.toml's vars", () => {
    const cfg = loadConfig(env);
    expect(cfg.ok).toBe(true);
    if (!cfg.ok) return;
    expect(cfg.config.regions).toEqual(["eu-1", "us-1"]);
    expect(cfg.config.jwt.algorithms).toEqual(["RS256", "ES256", "EdDSA"]);
    expect(cfg.config.quota).toEqual({ burst: 20, refillPerSecond: 0.2 });
  });

  it("refuses the committed test keys in production, and incomplete region keys", () => {
    const prod = loadConfig({ ...env, ENVIRONMENT: "production" });
    expect(prod.ok || prod.message).toContain("test keys");
    const missing = loadConfig({ ...env, REGIONS: "eu-1,ap-1" });
    expect(missing.ok || missing.message).toContain("ap-1");
    const noKeys = loadConfig({ ...env, JWT_JWKS: undefined });
    expect(noKeys.ok || noKeys.message).toContain("JWT_JWKS");
    const badAlg = loadConfig({ ...env, JWT_ALGORITHMS: "HS256" });
    expect(badAlg.ok).toBe(false);
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
