import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentReplica, startAgentReplica } from "../../devstack/agents.ts";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { TUNNEL_AGENTS_PATH, TUNNEL_ORIGIN } from "../../edge/relay/protocol.ts";
import { type ExecResult, type ExecStreamEvent, SCOPES } from "../../shared/api.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, RELAY_HEADER, relayAudience } from "../../shared/relay-signing.ts";
import { AGENT_EXEC_PARTS, EDGE_EXEC_PARTS, parseServerTiming } from "../../shared/spans.ts";
import { agentUrlFromLog, bearer, readSse, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 5 across processes: the edge in workerd, real agent processes dialling in over the tunnel,
// devcluster pods. Two regions, two agents each, two pods per region.

const tmp = tempDir("stack-exec-");
let stack: Stack;
const extra: AgentReplica[] = [];
const MiB = 1024 * 1024;

beforeAll(async () => {
  stack = await startStack({
    dir: tmp.dir,
    regions: ["eu-1", "us-1"],
    agentsPerRegion: 2,
    poolSize: 2,
    leaseTtlSeconds: 10,
    agentEnv: { LOG_LEVEL: "info" },
    // Generous for the suite's own traffic; the quota test uses a tenant of its own and bursts past it.
    edgeVars: { TENANT_QUOTA_BURST: "40", TENANT_QUOTA_PER_MINUTE: "600" },
  });
}, 90_000);

afterAll(async () => {
  await Promise.all(extra.map((a) => a.stop()));
  await stack?.close();
  tmp.remove();
});

/** Exec through the edge; eu-1 unless the caller names a region (header or claim). */
function exec(body: object, headers: Record<string, string> = {}, token = stack.tokens.tenantA) {
  return fetch(`${stack.edgeUrl}/v1/exec`, {
    method: "POST",
    headers: bearer(token, { "X-Sandbox-Region": "eu-1", ...headers }),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
}

const agentsOf = (region: string) => stack.agents.filter((a) => a.agentId.startsWith(`agent-${region}-`));

describe("exec through the edge", () => {
  it("runs a command in a pod of the chosen region, with an edge-minted request id", async () => {
    const res = await exec({ command: "echo hello from $(pwd); id -u" }, { "X-Request-Id": "client-id-42" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as ExecResult;
    expect(body.exitCode).toBe(0);
    expect(body.stdout).toBe("hello from /workspace\n1000\n");
    expect(body.region).toBe("eu-1");
    expect(res.headers.get("x-sandbox-region")).toBe("eu-1");
    expect(body.pod).toMatch(/^sandbox-/);
    const rid = res.headers.get("x-request-id");
    expect(rid).toMatch(/^[0-9a-f-]{36}$/);
    expect(rid).not.toBe("client-id-42");
    expect(body.requestId).toBe(rid);
    expect(res.headers.get("x-client-request-id")).toBe("client-id-42");

    // The region header picks another region; a tenant's region claim wins over the header.
    const us = await exec({ command: "true" }, { "X-Sandbox-Region": "us-1" });
    expect(us.status).toBe(200);
    expect(((await us.json()) as ExecResult).region).toBe("us-1");
    const usTenant = await stack.issuer.mint({
      tenant: "tenant-us",
      subject: "u",
      scopes: [SCOPES.exec],
      region: "us-1",
    });
    const claimed = await exec({ command: "true" }, { "X-Sandbox-Region": "eu-1" }, usTenant);
    expect(((await claimed.json()) as ExecResult).region).toBe("us-1");
    const badRegion = await exec({ command: "true" }, { "X-Sandbox-Region": "mars-1" });
    expect(badRegion.status).toBe(400);
  });

  // docs/architecture.md §5: output is capped at 1 MiB per stream at the exec server, streamed or not; the result
  // reports the truncation and the true byte counts.
  it("streams real command output as SSE up to the 1 MiB cap, with the true byte counts", async () => {
    const command = `head -c ${5 * MiB} /dev/zero | tr '\\0' 'a'; echo done >&2`;
    const res = await exec({ command }, { accept: "text/event-stream" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    let streamed = 0;
    let allA = true;
    const types: string[] = [];
    let result: ExecResult | undefined;
    await readSse(res, (m) => {
      const e = JSON.parse(m.data) as ExecStreamEvent;
      expect(m.event).toBe(e.type);
      if (types.at(-1) !== e.type) types.push(e.type);
      if (e.type === "stdout") {
        streamed += e.data.length;
        if (allA && !/^a*$/.test(e.data)) allA = false;
      }
      if (e.type === "result") result = e.result;
    });
    expect(types[0]).toBe("acquired");
    expect(types.at(-1)).toBe("result");
    expect(streamed).toBe(MiB);
    expect(allA).toBe(true);
    expect(result).toMatchObject({ exitCode: 0, stdoutBytes: 5 * MiB, truncated: true, stderr: "done\n" });

    const json = await exec({ command });
    expect(json.status).toBe(200);
    const r = (await json.json()) as ExecResult;
    expect(r).toMatchObject({ exitCode: 0, truncated: true, stdoutBytes: 5 * MiB, stderrBytes: 5 });
    expect(r.stdout.length).toBe(MiB);
    expect(r.stdout).toMatch(/^a+$/);
  });

  it("a streaming client that goes away kills the command and frees its lease", async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 30_000);
    const res = await fetch(`${stack.edgeUrl}/v1/exec`, {
      method: "POST",
      headers: bearer(stack.tokens.tenantA, { accept: "text/event-stream", "X-Sandbox-Region": "us-1" }),
      // Prints nothing: the agent's keep-alives are what let the edge notice the disconnect.
      body: JSON.stringify({ command: "sleep 60", timeoutSeconds: 120 }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    let pod = "";
    await readSse(res, (m) => {
      const e = JSON.parse(m.data) as ExecStreamEvent;
      if (e.type === "acquired") pod = e.pod;
      return e.type === "acquired";
    });
    const leasedBy = async () => {
      const us = (await stack.pools()).find((s) => s.region === "us-1");
      return us?.pods.find((p) => p.name === pod)?.holder?.requestId ?? null;
    };
    expect(await leasedBy()).toBe(res.headers.get("x-request-id"));
    ac.abort();
    clearTimeout(timer);
    const t0 = Date.now();
    await waitFor("the lease freed", async () => (await leasedBy()) === null, 15_000, 100);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it("a non-streamed caller that gives up cancels by its own request id: command killed, lease freed; another tenant cannot", async () => {
    // workerd never learns that a client waiting for a response head left, so the caller says so.
    const clientId = `cancel-me-${Date.now()}`;
    const ac = new AbortController();
    const pending = fetch(`${stack.edgeUrl}/v1/exec`, {
      method: "POST",
      headers: bearer(stack.tokens.tenantA, { "X-Sandbox-Region": "us-1", "X-Request-Id": clientId }),
      body: JSON.stringify({ command: "sleep 58", timeoutSeconds: 120 }),
      signal: ac.signal,
    }).catch((e: unknown) => e);
    const holderOf = async () => {
      const us = (await stack.pools()).find((s) => s.region === "us-1");
      return us?.pods.find((p) => p.holder?.tenant === "tenant-a")?.holder ?? undefined;
    };
    const held = await waitFor("the command's lease", holderOf, 15_000, 50);
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);

    const cancel = (id: string, token: string) =>
      fetch(`${stack.edgeUrl}/v1/requests/${encodeURIComponent(id)}/cancel`, {
        method: "POST",
        headers: bearer(token),
        signal: AbortSignal.timeout(10_000),
      });
    // Tenant B guessing A's id stops nothing.
    const other = await cancel(clientId, stack.tokens.tenantB);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("request_not_found");
    expect((await holderOf())?.requestId).toBe(held.requestId);

    const t0 = Date.now();
    const res = await cancel(clientId, stack.tokens.tenantA);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ requestId: clientId, cancelled: 1 });
    await waitFor(
      "the lease freed",
      async () => ((await holderOf())?.requestId === held.requestId ? undefined : true),
      10_000,
      50,
    );
    const freedMs = Date.now() - t0;
    console.log(`cancel → lease freed in ${freedMs} ms`);
    // Measured well under the 2 s (see the note); the bound here only guards "not at TTL".
    expect(freedMs).toBeLessThan(10_000);

    // Nothing left to cancel; a malformed id is a 400.
    expect((await cancel(clientId, stack.tokens.tenantA)).status).toBe(404);
    expect((await cancel("has space", stack.tokens.tenantA)).status).toBe(400);
  });

  it("refuses an oversized body with 413", async () => {
    const res = await exec({ command: "true", stdin: "x".repeat(3 * MiB) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
  });

  it("rate-limits a tenant with 429 + Retry-After, without touching other tenants", async () => {
    const token = await stack.issuer.mint({ tenant: "tenant-quota", subject: "q", scopes: [SCOPES.exec] });
    // An invalid body costs a token (the quota comes before the route) but no sandbox.
    const send = () =>
      fetch(`${stack.edgeUrl}/v1/exec`, {
        method: "POST",
        headers: bearer(token),
        body: "{}",
        signal: AbortSignal.timeout(15_000),
      });
    // Rounds of 60 until one is refused: on a busy machine a round can take long enough for the
    // 10/s refill to cover it, so how many rounds that takes depends on the machine, not the quota.
    const t0 = Date.now();
    const responses: Response[] = [];
    for (let round = 0; round < 10 && !responses.some((r) => r.status === 429); round++) {
      responses.push(...(await Promise.all(Array.from({ length: 60 }, send))));
    }
    const elapsedS = (Date.now() - t0) / 1000;
    const limited = responses.filter((r) => r.status === 429);
    const passed = responses.filter((r) => r.status === 400);
    expect(limited.length + passed.length).toBe(responses.length);
    // Burst 40 plus what 10/s can refill while the rounds are served.
    expect(passed.length).toBeGreaterThanOrEqual(40);
    expect(passed.length).toBeLessThanOrEqual(40 + Math.ceil(elapsedS * 10) + 1);
    expect(limited.length).toBeGreaterThan(0);
    const r = limited[0]!;
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(r.headers.get("ratelimit-limit")).toBe("40");
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
    await Promise.all(responses.filter((x) => x !== r).map((x) => x.body?.cancel()));
    // Another tenant is unaffected.
    const other = await exec({ command: "true" }, {}, stack.tokens.tenantB);
    expect(other.status).toBe(200);
  });
});

describe("Server-Timing through the real stack", () => {
  it("/v1/exec reports the edge's and the agent's spans, each side's parts within its total", async () => {
    const res = await exec({ command: "true" });
    expect(res.status).toBe(200);
    await res.json();
    const header = res.headers.get("server-timing");
    const spans = parseServerTiming(header);
    const t = new Map(spans.map((s) => [s.name, s.dur]));
    const edgeParts: string[] = [...EDGE_EXEC_PARTS];
    const agentParts: string[] = [...AGENT_EXEC_PARTS];
    for (const name of [...edgeParts, "edge-total", ...agentParts, "agent-total"]) {
      expect(t.has(name), `${name} in ${header}`).toBe(true);
    }
    const sum = (names: string[]) => names.reduce((n, k) => n + (t.get(k) ?? 0), 0);
    // Each side times with its own clock; parts are disjoint intervals inside that side's total.
    expect(sum(edgeParts)).toBeLessThanOrEqual(t.get("edge-total")!);
    expect(sum(agentParts)).toBeLessThanOrEqual(t.get("agent-total")! + 0.01);
    // The agent's whole stay fits in the edge's tunnel round trip (workerd's clock ticks in ms).
    expect(t.get("agent-total")!).toBeLessThanOrEqual(t.get("edge-tunnel")! + 1);
    expect(t.get("agent-exec")!).toBeGreaterThan(0);
  });
});

describe("the agent refuses relays the edge did not sign for this request", () => {
  const region = "eu-1";
  let agentUrl: string;
  const command = JSON.stringify({ command: "echo direct", timeoutSeconds: 5 });
  const claims = { tenant: "tenant-a", subject: "alice", scopes: [SCOPES.exec] };

  beforeAll(async () => {
    const a = agentsOf(region)[0]!;
    agentUrl = await waitFor("the agent's URL in its log", () => agentUrlFromLog(a.logFile));
  });

  const direct = (path: string, body: string, token: string | null) =>
    fetch(`${agentUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { [RELAY_HEADER]: token } : {}) },
      body,
      signal: AbortSignal.timeout(15_000),
    });
  const codeOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
  const signer = (opts: { now?: () => number } = {}) =>
    createRelaySigner({
      privateJwk: stack.keys[region]!.relayPrivate,
      audience: relayAudience(region),
      ...opts,
    });

  it("serves a correctly signed relay once, then refuses its replay", async () => {
    const token = await (await signer()).sign({
      method: "POST",
      path: "/v1/exec",
      body: command,
      requestId: "direct-1",
      ...claims,
    });
    const ok = await direct("/v1/exec", command, token);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as ExecResult).stdout).toBe("direct\n");
    const replay = await direct("/v1/exec", command, token);
    expect(replay.status).toBe(401);
    expect(await codeOf(replay)).toBe("relay_replayed");
  });

  it("refuses a changed body, a changed path, an expired token, a wrong key and no token", async () => {
    const s = await signer();
    const sign = (path: string, body: string) =>
      s.sign({ method: "POST", path, body, requestId: "direct-2", ...claims });

    const changedBody = await direct(
      "/v1/exec",
      JSON.stringify({ command: "echo evil", timeoutSeconds: 5 }),
      await sign("/v1/exec", command),
    );
    expect(changedBody.status).toBe(401);
    expect(await codeOf(changedBody)).toBe("relay_signature_invalid");

    const changedPath = await direct("/v1/chat", command, await sign("/v1/exec", command));
    expect(changedPath.status).toBe(401);
    expect(await codeOf(changedPath)).toBe("relay_signature_invalid");

    const old = await signer({ now: () => Math.floor(Date.now() / 1000) - 120 });
    const expired = await direct(
      "/v1/exec",
      command,
      await old.sign({ method: "POST", path: "/v1/exec", body: command, requestId: "direct-3", ...claims }),
    );
    expect(expired.status).toBe(401);
    expect(await codeOf(expired)).toBe("relay_expired");

    // Same kid, different key; and the other region's real key.
    const impostor = await generateSigningKeyPair(String(stack.keys[region]!.relayPrivate.kid));
    for (const privateJwk of [impostor.privateJwk, stack.keys["us-1"]!.relayPrivate]) {
      const wrong = await createRelaySigner({ privateJwk, audience: relayAudience(region) });
      const res = await direct(
        "/v1/exec",
        command,
        await wrong.sign({
          method: "POST",
          path: "/v1/exec",
          body: command,
          requestId: "direct-4",
          ...claims,
        }),
      );
      expect(res.status).toBe(401);
      expect(await codeOf(res)).toBe("relay_signature_invalid");
    }

    // Signed for the other region's audience with that region's key: not for this agent.
    const usSigner = await createRelaySigner({
      privateJwk: stack.keys["us-1"]!.relayPrivate,
      audience: relayAudience("us-1"),
    });
    const otherAudience = await direct(
      "/v1/exec",
      command,
      await usSigner.sign({
        method: "POST",
        path: "/v1/exec",
        body: command,
        requestId: "direct-5",
        ...claims,
      }),
    );
    expect(otherAudience.status).toBe(401);

    const none = await direct("/v1/exec", command, null);
    expect(none.status).toBe(401);
    expect(await codeOf(none)).toBe("relay_signature_invalid");
  });
});

describe("tunnel failures and regions", () => {
  it("a tunnel dropped mid-request gives a fast 502, and the next request succeeds", async () => {
    const pending = exec({ command: "sleep 60; echo finished", timeoutSeconds: 90 }).then(async (res) => ({
      res,
      body: (await res.json()) as { error?: { code: string } },
      at: Date.now(),
    }));
    // Which agent holds the lease: the pool as the edge reports it.
    const holder = await waitFor(
      "the sleep's lease",
      async () => {
        const snaps = await stack.pools();
        const eu = snaps.find((s) => s.region === "eu-1");
        return eu?.pods.find((p) => p.state === "leased" && p.holder)?.holder?.agentId;
      },
      30_000,
      50,
    );
    const victim = stack.agents.find((a) => a.agentId === holder)!;
    expect(victim).toBeDefined();
    const killedAt = Date.now();
    victim.kill();
    const { res, body, at } = await pending;
    expect(res.status).toBe(502);
    expect(body.error?.code).toBe("tunnel_closed");
    // Fast: the drop ends the call, well before the command would have finished (60 s) or the relay
    // timed out (90 + 60 s); 30 s leaves a loaded machine room and still tells the two apart.
    expect(at - killedAt).toBeLessThan(30_000);

    // The other eu-1 replica serves the next request (the dead agent's pod stays leased until its TTL).
    const next = await exec({ command: "echo again" });
    expect(next.status).toBe(200);
    expect(((await next.json()) as ExecResult).stdout).toBe("again\n");

    // A restarted replica dials back in and is used.
    const replacement = await startAgentReplica({
      agentId: victim.agentId,
      env: stack.agentEnvFor("eu-1", victim.agentId),
      logDir: join(stack.dir, "logs"),
    });
    extra.push(replacement);
    await waitFor(
      "the restarted agent's tunnel",
      async () => {
        const tunnels = await stack.edge.mf.getDurableObjectNamespace("TUNNEL");
        const ns = tunnels as unknown as {
          idFromName(n: string): unknown;
          get(id: unknown): { fetch(u: string): Promise<Response> };
        };
        const agents = (await (
          await ns.get(ns.idFromName("eu-1")).fetch(`${TUNNEL_ORIGIN}${TUNNEL_AGENTS_PATH}`)
        ).json()) as Array<{
          agentId: string;
        }>;
        return agents.some((a) => a.agentId === victim.agentId);
      },
      60_000,
      200,
    );
  }, 180_000);

  it("fails over to the other region when one has no agent, and reports the region", async () => {
    await Promise.all([...agentsOf("eu-1"), ...extra].map((a) => a.stop()));
    const viaHeader = await waitFor(
      "failover to us-1",
      async () => {
        const res = await exec({ command: "echo failover" }, { "X-Sandbox-Region": "eu-1" });
        const body = (await res.json()) as ExecResult;
        return res.status === 200 && body.region === "us-1" ? { res, body } : undefined;
      },
      30_000,
      200,
    );
    expect(viaHeader.body.stdout).toBe("failover\n");
    expect(viaHeader.res.headers.get("x-sandbox-region")).toBe("us-1");

    // The tenant's claim names eu-1: served by us-1 too.
    const euTenant = await stack.issuer.mint({
      tenant: "tenant-eu",
      subject: "eve",
      scopes: [SCOPES.exec],
      region: "eu-1",
    });
    const viaClaim = await exec({ command: "echo claim" }, {}, euTenant);
    expect(viaClaim.status).toBe(200);
    expect((await viaClaim.json()) as ExecResult).toMatchObject({ region: "us-1", stdout: "claim\n" });

    // No agent anywhere: 503 no_agent, not a hang.
    await Promise.all(agentsOf("us-1").map((a) => a.stop()));
    const none = await waitFor(
      "no agent in any region",
      async () => {
        const res = await exec({ command: "true" });
        return res.status === 503 ? res : undefined;
      },
      10_000,
      200,
    );
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe("no_agent");
    expect(none.headers.get("retry-after")).not.toBeNull();
  }, 90_000);
});
