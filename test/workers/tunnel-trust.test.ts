import { env, runInDurableObject, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { TunnelDO } from "../../edge/durable/tunnel.ts";
import { signAgentToken } from "../../shared/tunnel.ts";
import { AGENT_C3_PRIVATE_JWK, AGENT_PRIVATE_JWKS } from "./fixtures/test-keys.ts";
import {
  auth,
  BASE,
  closeAgents,
  connectAgent,
  expectError,
  type TestAgent,
  tenantToken,
  waitForAgents,
} from "./support.ts";

// What one agent of a region may do to the rest: log in with a captured token, or answer a request
// that another agent holds. Neither.

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1"]));

const dial = (token: string) =>
  SELF.fetch(`${BASE}/v1/tunnel?region=eu-1`, {
    headers: { Upgrade: "websocket", Authorization: `Bearer ${token}` },
  });

describe("agent login", () => {
  it("a login token is good once: the same token again → 401 token_replayed", async () => {
    const token = await signAgentToken({
      privateJwk: AGENT_PRIVATE_JWKS["eu-1"]!,
      agentId: "a-1",
      region: "eu-1",
    });
    const first = await dial(token);
    expect(first.status).toBe(101);
    first.webSocket!.accept();
    await expectError(await dial(token), 401, "token_replayed");
    // Still refused once the first socket is gone: the jti is remembered until the token expires.
    first.webSocket!.close(1000, "done");
    await waitForAgents(TUNNEL, "eu-1", 0);
    await expectError(await dial(token), 401, "token_replayed");
    // A fresh token of the same agent is fine.
    const again = await dial(
      await signAgentToken({ privateJwk: AGENT_PRIVATE_JWKS["eu-1"]!, agentId: "a-1", region: "eu-1" }),
    );
    expect(again.status).toBe(101);
    again.webSocket!.accept();
    again.webSocket!.close(1000, "done");
  });
});

describe("agent keys are per cluster", () => {
  // eu-1 has two agent keys: the main one bound to default/c1/c2, and one bound to c3 only.
  const login = (privateJwk: typeof AGENT_C3_PRIVATE_JWK, cluster?: string) =>
    signAgentToken({
      privateJwk,
      agentId: `a-${cluster ?? "none"}`,
      region: "eu-1",
      ...(cluster ? { cluster } : {}),
    }).then(dial);

  it("a key logs in only as a cluster it is bound to: c3's key claiming c1 → 401, and c1 gets no relay", async () => {
    const own = await login(AGENT_C3_PRIVATE_JWK, "c3");
    expect(own.status).toBe(101);
    own.webSocket!.accept();
    const claimed = await expectError(await login(AGENT_C3_PRIVATE_JWK, "c1"), 401, "invalid_token");
    expect(claimed.message).toContain('not bound to cluster "c1"');
    // Naming no cluster is claiming "default": also not c3's.
    await expectError(await login(AGENT_C3_PRIVATE_JWK), 401, "invalid_token");
    // And the other way: the region's main key cannot claim c3.
    await expectError(await login(AGENT_PRIVATE_JWKS["eu-1"]!, "c3"), 401, "invalid_token");
    await waitForAgents(TUNNEL, "eu-1", 1);

    // With only c3's agent connected, a c1 sandbox's request reaches nobody.
    const token = await tenantToken({ tenant: "tenant-a", scope: "sandbox:exec" });
    const res = await SELF.fetch(`${BASE}/v1/sandboxes/sb.eu-1.c1.${"k".repeat(20)}`, {
      headers: auth(token),
    });
    await expectError(res, 503, "sandbox_cluster_unavailable");
    own.webSocket!.close(1000, "done");
    await waitForAgents(TUNNEL, "eu-1", 0);
  });
});

/** Wait until the DO has processed `agent`'s heartbeat with `ready` (frames of one socket are in order). */
async function heartbeatSeen(agentId: string, ready: number): Promise<void> {
  const stub = env.TUNNEL.get(env.TUNNEL.idFromName("eu-1"));
  for (;;) {
    const seen = await runInDurableObject(stub, (_i: TunnelDO, state) =>
      state
        .getWebSockets()
        .map((ws) => ws.deserializeAttachment() as { agentId: string; capacity: { ready: number } | null })
        .some((a) => a.agentId === agentId && a.capacity?.ready === ready),
    );
    if (seen) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("reply frames", () => {
  it("count only from the socket that holds the request", async () => {
    const ids: string[] = [];
    const byAgent = new Map<string, TestAgent>();
    let release: () => void = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    const handler = async (r: { frame: { id: string } }, holder: TestAgent) => {
      ids.push(r.frame.id);
      const other = [...byAgent.values()].find((a) => a !== holder)!;
      // The other agent of the region answers first: a response head, a body chunk, an error.
      other.send({ type: "response", id: r.frame.id, status: 418, headers: [], body: "" });
      other.send({ type: "error", id: r.frame.id, code: "internal", message: "forged" });
      other.heartbeat({ ready: 7, leased: 0, queued: 0, poolSize: 7 });
      await heartbeatSeen(other.agentId, 7);
      release();
      await holder.respond(r.frame.id, Response.json({ from: holder.agentId }));
    };
    for (const id of ["agent-x", "agent-y"]) byAgent.set(id, await connectAgent("eu-1", handler, id));
    agents.push(...byAgent.values());
    await waitForAgents(TUNNEL, "eu-1", 2);

    const token = await tenantToken({ tenant: "tenant-frames", scope: "sandbox:exec" });
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/json" }),
      body: JSON.stringify({ command: "true" }),
    });
    // Unfixed, the forged 418 head is what the client gets.
    expect(res.status).toBe(200);
    await released;
    expect(ids).toHaveLength(1);
    const body = (await res.json()) as { from: string };
    expect(byAgent.has(body.from)).toBe(true);
  });
});
