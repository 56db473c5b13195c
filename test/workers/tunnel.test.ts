import { createExecutionContext, env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { createApp } from "../../edge/app.ts";
import { depsFromEnv } from "../../edge/deps.ts";
import { TUNNEL_AGENTS_PATH, TUNNEL_HEADERS, TUNNEL_ORIGIN } from "../../edge/relay/protocol.ts";
import { RELAY_HEADER } from "../../shared/relay-signing.ts";
import { headersToPairs, signAgentToken, toBase64 } from "../../shared/tunnel.ts";
import { waitFor } from "../support/wait-for.ts";
import { AGENT_PRIVATE_JWKS, TEST_ADMIN_SUBJECT } from "./fixtures/test-keys.ts";
import {
  auth,
  BASE,
  closeAgents,
  connectAgent,
  expectError,
  type TestAgent,
  TUNNEL_MAX_FRAME_BYTES,
  tenantToken,
  waitForAgents,
} from "./support.ts";

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1", "us-1"]));
async function agent(...args: Parameters<typeof connectAgent>): Promise<TestAgent> {
  const a = await connectAgent(...args);
  agents.push(a);
  return a;
}

const execResult = (stdout: string) => ({
  requestId: "set-by-agent",
  pod: "pod-1",
  exitCode: 0,
  signal: null,
  timedOut: false,
  truncated: false,
  stdout,
  stderr: "",
  stdoutBytes: stdout.length,
  stderrBytes: 0,
  durationMs: 3,
  queueMs: 1,
});

async function exec(tenant: string, body: object, headers: Record<string, string> = {}) {
  const token = await tenantToken({ tenant, scope: "sandbox:exec sandbox:admin" });
  return SELF.fetch(`${BASE}/v1/exec`, {
    method: "POST",
    headers: auth(token, { "Content-Type": "application/json", ...headers }),
    body: JSON.stringify(body),
  });
}

describe("agent login", () => {
  it("refuses a missing token, another region's key, and an unknown region", async () => {
    const bare = await SELF.fetch(`${BASE}/v1/tunnel?region=eu-1`, { headers: { Upgrade: "websocket" } });
    await expectError(bare, 401, "unauthenticated");
    const usToken = await signAgentToken({
      privateJwk: AGENT_PRIVATE_JWKS["us-1"]!,
      agentId: "x",
      region: "us-1",
    });
    const cross = await SELF.fetch(`${BASE}/v1/tunnel?region=eu-1`, {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${usToken}` },
    });
    await expectError(cross, 401, "invalid_token");
    // us-1's key claiming eu-1: signature does not verify against eu-1's keys.
    const forged = await signAgentToken({
      privateJwk: AGENT_PRIVATE_JWKS["us-1"]!,
      agentId: "x",
      region: "eu-1",
    });
    const forgedRes = await SELF.fetch(`${BASE}/v1/tunnel?region=eu-1`, {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${forged}` },
    });
    await expectError(forgedRes, 401, "invalid_token");
    const unknown = await SELF.fetch(`${BASE}/v1/tunnel?region=mars`, {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${usToken}` },
    });
    await expectError(unknown, 400, "invalid_request");
  });
});

describe("relay through the tunnel", () => {
  it("round trip: the agent gets a request whose relay signature verifies and binds to it", async () => {
    const a = await agent("eu-1", async (r, ag) => {
      const claims = await ag.verifier.verifyRequest(r.request);
      if (!claims.ok) throw new Error(claims.error.code);
      const cmd = (JSON.parse(new TextDecoder().decode(r.body)) as { command: string }).command;
      // Real agents put their region in their answers; the edge passes them on unread.
      const result = { ...execResult(`ran ${cmd} for ${claims.value.tenant}`), region: ag.region };
      await ag.respond(r.frame.id, Response.json(result));
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec("tenant-rt", { command: "echo hi" }, { "X-Request-Id": "mine" });
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Sandbox-Region")).toBe("eu-1");
    expect(await res.json()).toEqual({ ...execResult("ran echo hi for tenant-rt"), region: "eu-1" });

    const got = a.received[0]!;
    expect(got.frame.path).toBe("/v1/exec");
    // The agent sees the edge's request id, the client's only as X-Client-Request-Id, no client auth.
    expect(got.request.headers.get("X-Request-Id")).toBe(res.headers.get("X-Request-Id"));
    expect(got.request.headers.get("X-Client-Request-Id")).toBe("mine");
    expect(got.request.headers.get("Authorization")).toBeNull();
    expect(JSON.parse(new TextDecoder().decode(got.body))).toEqual({
      command: "echo hi",
      timeoutSeconds: 30,
    });
    // The same token cannot be replayed, nor moved to another body.
    const replay = await a.verifier.verifyRequest(got.request.clone());
    expect(replay.ok || replay.error.code).toBe("relay_replayed");
    const moved = new Request("http://agent.local/v1/exec", {
      method: "POST",
      headers: { [RELAY_HEADER]: got.request.headers.get(RELAY_HEADER)! },
      body: JSON.stringify({ command: "rm -rf /", timeoutSeconds: 30 }),
    });
    const movedRes = await a.verifier.verifyRequest(moved);
    expect(movedRes.ok || movedRes.error.code).toBe("relay_signature_invalid");
  });

  it("a tunnel dropped mid-request fails fast with 502 tunnel_closed; a new agent then serves", async () => {
    let served = 0;
    await agent("eu-1", (_r, ag) => {
      ag.close(1011); // the agent dies with the request in hand
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const t0 = Date.now();
    const res = await exec("tenant-drop", { command: "sleep 100", timeoutSeconds: 120 });
    expect(Date.now() - t0).toBeLessThan(5000);
    await expectError(res, 502, "tunnel_closed");
    await waitForAgents(TUNNEL, "eu-1", 0);

    await agent("eu-1", async (r, ag) => {
      served++;
      await ag.respond(r.frame.id, Response.json(execResult("back")));
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const again = await exec("tenant-drop", { command: "true" });
    expect(again.status).toBe(200);
    expect(served).toBe(1);
  });

  it("fails every pending request at once when the socket closes", async () => {
    const seen: string[] = [];
    const a = await agent("eu-1", (r) => {
      seen.push(r.frame.id);
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const pending = Array.from({ length: 3 }, () => exec("tenant-many", { command: "sleep 100" }));
    await waitFor("the agent got all three", () => seen.length === 3, 5_000, 10);
    a.close(1001);
    for (const res of await Promise.all(pending)) await expectError(res, 502, "tunnel_closed");
  });

  it("per-request timeout: 504 relay_timeout and a cancel frame to the agent", async () => {
    const a = await agent("eu-1", () => {
      // never answers
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const stub = TUNNEL.get(TUNNEL.idFromName("eu-1"));
    const t0 = Date.now();
    const res = await stub.fetch(`${TUNNEL_ORIGIN}/v1/pool`, {
      headers: { [TUNNEL_HEADERS.timeoutMs]: "1000", "X-Request-Id": "timeout-test" },
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    await expectError(res, 504, "relay_timeout");
    await waitFor("a cancel frame", () => a.cancelled.length > 0, 5_000, 10);
    expect(a.cancelled).toEqual([a.received[0]!.frame.id]);
  });

  // Every route that relays must carry the client's signal (edge/relay/from-context.ts relayFrom):
  // before it did, a client leaving a sandbox exec, a file PUT or POST /v1/sandboxes never
  // cancelled the agent's work. The Worker is called with a request whose signal the test owns,
  // standing in for workerd aborting it when the client leaves (enable_request_signal): a
  // SELF.fetch abort, or a real socket's, is also seen by other paths (the subrequest's own
  // cancel, the body pipe), so only this shows that the route passes the signal on.
  const SB = "sb.eu-1.default.abcdefghij0123456789";
  const json = { "Content-Type": "application/json" };
  const leaving: Array<[string, string, RequestInit]> = [
    ["/v1/exec", "/v1/exec", { method: "POST", headers: json, body: '{"command":"sleep 100"}' }],
    [
      "/v1/exec (stream)",
      "/v1/exec",
      {
        method: "POST",
        headers: { ...json, Accept: "text/event-stream" },
        body: '{"command":"sleep 100"}',
      },
    ],
    ["POST /v1/sandboxes", "/v1/sandboxes", { method: "POST", headers: json, body: "{}" }],
    [
      "a sandbox exec",
      `/v1/sandboxes/${SB}/exec`,
      { method: "POST", headers: json, body: '{"command":"sleep 100"}' },
    ],
    [
      "a file PUT",
      `/v1/sandboxes/${SB}/files/big.bin`,
      { method: "PUT", headers: { "Content-Type": "application/octet-stream" }, body: "x" },
    ],
    ["a file GET", `/v1/sandboxes/${SB}/files/big.bin`, { method: "GET" }],
    ["DELETE a sandbox", `/v1/sandboxes/${SB}`, { method: "DELETE" }],
    [
      "a network PUT",
      `/v1/sandboxes/${SB}/network`,
      { method: "PUT", headers: json, body: '{"allow":["pkgs.test"]}' },
    ],
    ["/v1/chat", "/v1/chat", { method: "POST", headers: json, body: '{"message":"hi"}' }],
    [
      "a process start",
      `/v1/sandboxes/${SB}/processes`,
      { method: "POST", headers: json, body: '{"command":"cat"}' },
    ],
    ["a process list", `/v1/sandboxes/${SB}/processes`, { method: "GET" }],
    ["a process GET", `/v1/sandboxes/${SB}/processes/7`, { method: "GET" }],
    ["a process DELETE", `/v1/sandboxes/${SB}/processes/7`, { method: "DELETE" }],
    [
      "a process output read",
      `/v1/sandboxes/${SB}/processes/7/output?since=0&waitMs=30000`,
      { method: "GET" },
    ],
    [
      "a process output stream",
      `/v1/sandboxes/${SB}/processes/7/output`,
      { method: "GET", headers: { Accept: "text/event-stream", "Last-Event-ID": "12" } },
    ],
    [
      "a process stdin",
      `/v1/sandboxes/${SB}/processes/7/stdin?eof=1`,
      { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: "hi" },
    ],
    [
      "a process signal",
      `/v1/sandboxes/${SB}/processes/7/signal`,
      { method: "POST", headers: json, body: '{"signal":"SIGTERM"}' },
    ],
    [
      "a process resize",
      `/v1/sandboxes/${SB}/processes/7/resize`,
      { method: "POST", headers: json, body: '{"cols":100,"rows":30}' },
    ],
  ];
  for (const [name, path, init] of leaving) {
    it(`a client that leaves ${name} before the answer gets the agent a cancel frame`, async () => {
      const a = await agent("eu-1", () => {
        // never answers
      });
      await waitForAgents(TUNNEL, "eu-1", 1);
      const ac = new AbortController();
      // A tenant per route: together they would exhaust one tenant's quota burst.
      const token = await tenantToken({
        tenant: `tenant-leave-${name.replace(/[^A-Za-z0-9-]+/g, "-")}`,
        scope: "sandbox:exec sandbox:chat",
      });
      const req = new Request(`${BASE}${path}`, {
        ...init,
        headers: auth(token, init.headers as Record<string, string> | undefined),
        signal: ac.signal,
      });
      const worker = createApp(depsFromEnv);
      const pending = Promise.resolve(worker.fetch(req, env, createExecutionContext())).catch(
        (e: unknown) => e,
      );
      await waitFor("the agent got the request", () => a.received.length === 1, 5_000, 10);
      expect(a.cancelled).toEqual([]);
      ac.abort();
      await pending;
      await waitFor("a cancel frame", () => a.cancelled.length > 0, 5_000, 10);
      expect(a.cancelled).toEqual([a.received[0]!.frame.id]);
    });
  }

  // After the head: a client that stops reading a quiet stream (a command that prints nothing yet)
  // cancels the agent's request too, on every streaming route.
  const post = (body: string): RequestInit => ({ method: "POST", body });
  const streamed: Array<[string, string, RequestInit]> = [
    ["/v1/exec", "/v1/exec", post('{"command":"sleep 100"}')],
    ["a sandbox exec", `/v1/sandboxes/${SB}/exec`, post('{"command":"sleep 100"}')],
    ["/v1/chat", "/v1/chat", post('{"message":"hi"}')],
    ["a process's output", `/v1/sandboxes/${SB}/processes/7/output?since=3`, { method: "GET" }],
  ];
  for (const [name, path, init] of streamed) {
    it(`a client that leaves the stream of ${name} gets the agent a cancel frame`, async () => {
      const a = await agent("eu-1", (r, ag) => {
        // A head and one event, then silence: the stream stays open, as a quiet command's does.
        const headers = headersToPairs(new Headers({ "content-type": "text/event-stream" }));
        ag.send({ type: "response", id: r.frame.id, status: 200, headers });
        ag.sendChunk(r.frame.id, 0, new TextEncoder().encode(": ping\n\n"));
      });
      await waitForAgents(TUNNEL, "eu-1", 1);
      // A tenant per route: together they would exhaust one tenant's quota burst.
      const token = await tenantToken({
        tenant: `tenant-leave-${name.replace(/[^A-Za-z0-9-]+/g, "-")}`,
        scope: "sandbox:exec sandbox:chat",
      });
      const res = await SELF.fetch(`${BASE}${path}`, {
        ...init,
        headers: auth(token, { "Content-Type": "application/json", Accept: "text/event-stream" }),
      });
      const reader = res.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe(": ping\n\n");
      expect(a.cancelled).toEqual([]);
      await reader.cancel();
      await waitFor("a cancel frame", () => a.cancelled.length > 0, 5_000, 10);
      expect(a.cancelled).toEqual([a.received[0]!.frame.id]);
    });
  }

  it("POST /v1/requests/:id/cancel stops only the caller's own request with that id", async () => {
    const a = await agent("eu-1", () => {
      // never answers
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const tokens = {
      a: await tenantToken({ tenant: "tenant-cancel-a", scope: "sandbox:exec" }),
      b: await tenantToken({ tenant: "tenant-cancel-b", scope: "sandbox:exec" }),
    };
    const send = (token: string) =>
      SELF.fetch(`${BASE}/v1/exec`, {
        method: "POST",
        headers: auth(token, { "Content-Type": "application/json", "X-Request-Id": "same-id" }),
        body: JSON.stringify({ command: "sleep 100" }),
      });
    const cancel = (token: string, id = "same-id") =>
      SELF.fetch(`${BASE}/v1/requests/${encodeURIComponent(id)}/cancel`, {
        method: "POST",
        headers: auth(token),
      });
    const ofB = send(tokens.b);
    await waitFor("B's request at the agent", () => a.received.length === 1, 5_000, 10);
    const ofA = send(tokens.a);
    await waitFor("A's request at the agent", () => a.received.length === 2, 5_000, 10);
    for (const r of a.received) {
      expect(r.request.headers.get("x-client-request-id")).toBe("same-id");
      expect(r.request.headers.get(TUNNEL_HEADERS.cancelKey)).toBeNull();
    }
    const idOfB = a.received[0]!.frame.id;

    const byB = await cancel(tokens.b);
    expect(byB.status).toBe(200);
    expect(await byB.json()).toEqual({ requestId: "same-id", cancelled: 1 });
    expect(a.cancelled).toEqual([idOfB]);
    await expectError(await ofB, 499, "request_cancelled");
    // A's request is untouched until A cancels it; then there is nothing left.
    expect((await cancel(tokens.a)).status).toBe(200);
    await expectError(await ofA, 499, "request_cancelled");
    expect(a.cancelled).toHaveLength(2);
    await expectError(await cancel(tokens.a), 404, "request_not_found");
    await expectError(await cancel(tokens.a, "has space"), 400, "invalid_request");
    await expectError(
      await SELF.fetch(`${BASE}/v1/requests/x/cancel`, { method: "POST" }),
      401,
      "unauthenticated",
    );
  });

  it("a 20 MiB streamed output crosses intact, in frames far below the message limit", async () => {
    const size = 20 * 1024 * 1024;
    const pattern = (i: number) => (i * 31 + (i >> 12)) & 0xff;
    const a = await agent("eu-1", async (r, ag) => {
      ag.send({
        type: "response",
        id: r.frame.id,
        status: 200,
        headers: [["content-type", "application/octet-stream"]],
      });
      const chunk = 128 * 1024;
      let seq = 0;
      for (let off = 0; off < size; off += chunk) {
        const part = new Uint8Array(chunk);
        for (let i = 0; i < chunk; i++) part[i] = pattern(off + i);
        ag.sendChunk(r.frame.id, seq++, part);
      }
      ag.send({ type: "end", id: r.frame.id, chunks: seq });
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec(
      "tenant-big",
      { command: "head -c 20M /dev/urandom" },
      { Accept: "text/event-stream" },
    );
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let n = 0;
    let bad = -1;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (let i = 0; i < value.length; i++) {
        if (bad < 0 && value[i] !== pattern(n + i)) bad = n + i;
      }
      n += value.length;
    }
    expect(bad).toBe(-1);
    expect(n).toBe(size);
    expect(a.maxFrameBytes).toBeLessThanOrEqual(TUNNEL_MAX_FRAME_BYTES);
  });

  it("a large request body is sent in chunk frames and arrives intact", async () => {
    const a = await agent("eu-1", async (r, ag) => {
      const claims = await ag.verifier.verifyRequest(r.request);
      await ag.respond(r.frame.id, Response.json({ ...execResult(String(r.body.length)), ok: claims.ok }));
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const stdin = "y".repeat(900 * 1024);
    const res = await exec("tenant-stdin", { command: "wc -c", stdin });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean };
    expect(body.ok).toBe(true);
    expect(a.received[0]!.frame.bodyFollows).toBe(true);
    expect(JSON.parse(new TextDecoder().decode(a.received[0]!.body)).stdin).toBe(stdin);
    expect(a.maxFrameBytes).toBeLessThanOrEqual(TUNNEL_MAX_FRAME_BYTES);
  });

  it("a small answer whose body travels inline in the response frame arrives whole", async () => {
    const a = await agent("eu-1", async (r, ag) => {
      const json = JSON.stringify(execResult("inline"));
      ag.send({
        type: "response",
        id: r.frame.id,
        status: 200,
        headers: [["content-type", "application/json"]],
        body: toBase64(new TextEncoder().encode(json)),
      });
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec("tenant-inline", { command: "true" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { stdout: string }).stdout).toBe("inline");
    // Nothing is left pending in the DO: the next request on the same agent is served too.
    const again = await exec("tenant-inline", { command: "true" });
    expect(again.status).toBe(200);
    await again.json();
    expect(a.received.length).toBe(2);
  });

  it("spreads requests over several agents, preferring those with free capacity", async () => {
    const handler = async (r: Parameters<Parameters<typeof connectAgent>[1]>[0], ag: TestAgent) => {
      await ag.respond(r.frame.id, Response.json(execResult(ag.agentId)));
    };
    const a1 = await agent("eu-1", handler, "agent-1");
    const a2 = await agent("eu-1", handler, "agent-2");
    await waitForAgents(TUNNEL, "eu-1", 2);
    for (let i = 0; i < 6; i++) {
      const r = await exec("tenant-spread", { command: "true" });
      expect(r.status, await r.clone().text()).toBe(200);
    }
    expect(a1.received.length).toBe(3);
    expect(a2.received.length).toBe(3);

    a1.heartbeat({ ready: 0, leased: 8, queued: 2, poolSize: 8 });
    a2.heartbeat({ ready: 5, leased: 3, queued: 0, poolSize: 8 });
    // Route only once the DO has taken in both heartbeats (it reports them on its agents list).
    const stub = TUNNEL.get(TUNNEL.idFromName("eu-1"));
    await waitFor(
      "the DO to show both heartbeats",
      async () => {
        const agents = (await (await stub.fetch(`${TUNNEL_ORIGIN}${TUNNEL_AGENTS_PATH}`)).json()) as Array<{
          agentId: string;
          capacity: { ready: number } | null;
        }>;
        const ready = (id: string) => agents.find((a) => a.agentId === id)?.capacity?.ready;
        return ready("agent-1") === 0 && ready("agent-2") === 5;
      },
      10_000,
      10,
    );
    for (let i = 0; i < 4; i++) expect((await exec("tenant-spread", { command: "true" })).status).toBe(200);
    expect(a1.received.length).toBe(3);
    expect(a2.received.length).toBe(7);
  });

  it("two regions: header picks the region, failover when it has no agent, region reported", async () => {
    const eu = await agent("eu-1", async (r, ag) => {
      const c = await ag.verifier.verifyRequest(r.request);
      await ag.respond(r.frame.id, Response.json({ ...execResult(`eu ${c.ok}`), region: ag.region }));
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    // us-1 has no agent: the request fails over to eu-1, signed for eu-1's audience.
    const res = await exec("tenant-region", { command: "true" }, { "X-Sandbox-Region": "us-1" });
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Sandbox-Region")).toBe("eu-1");
    expect(((await res.json()) as { stdout: string; region: string }).stdout).toBe("eu true");

    const us = await agent("us-1", async (r, ag) => {
      const c = await ag.verifier.verifyRequest(r.request);
      await ag.respond(r.frame.id, Response.json({ ...execResult(`us ${c.ok}`), region: ag.region }));
    });
    await waitForAgents(TUNNEL, "us-1", 1);
    const res2 = await exec("tenant-region", { command: "true" }, { "X-Sandbox-Region": "us-1" });
    expect(res2.headers.get("X-Sandbox-Region")).toBe("us-1");
    expect((await res2.json()) as object).toMatchObject({ stdout: "us true", region: "us-1" });

    // A region pinned by the tenant's claim wins over the header.
    const pinned = await tenantToken({ tenant: "tenant-region", region: "eu-1", scope: "sandbox:exec" });
    const res3 = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(pinned, { "Content-Type": "application/json", "X-Sandbox-Region": "us-1" }),
      body: JSON.stringify({ command: "true" }),
    });
    expect(res3.headers.get("X-Sandbox-Region")).toBe("eu-1");
    await res3.body?.cancel();
    expect(eu.received.length).toBe(2);
    expect(us.received.length).toBe(1);
  });

  it("GET /v1/events?region=all merges the streams of every region's agents", async () => {
    // Like real agents, each keeps its event stream open (a response head and a chunk, no `end`):
    // the merged stream ends when any source ends, so finite streams would race each other.
    for (const region of ["eu-1", "us-1"]) {
      await agent(region, (r, ag) => {
        expect(r.frame.path).toBe("/v1/events");
        const at = new Date().toISOString();
        const sse =
          `event: snapshot\ndata: ${JSON.stringify({ region, agentId: ag.agentId })}\n\n` +
          `event: pool\ndata: ${JSON.stringify({ type: "pod.ready", at, agentId: ag.agentId, region, pod: `pod-${region}` })}\n\n`;
        ag.send({
          type: "response",
          id: r.frame.id,
          status: 200,
          headers: [["content-type", "text/event-stream"]],
        });
        ag.sendChunk(r.frame.id, 0, new TextEncoder().encode(sse));
      });
      await waitForAgents(TUNNEL, region, 1);
    }
    const token = await tenantToken({
      tenant: "tenant-admin",
      sub: TEST_ADMIN_SUBJECT,
      scope: "sandbox:admin",
    });
    const readUntil = async (res: Response, done: (text: string) => boolean): Promise<string> => {
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      const deadline = Date.now() + 5_000;
      while (!done(text) && Date.now() < deadline) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        text += decoder.decode(value, { stream: true });
      }
      await reader.cancel();
      return text;
    };

    const res = await SELF.fetch(`${BASE}/v1/events?region=all`, { headers: auth(token) });
    expect(res.status).toBe(200);
    const text = await readUntil(res, (t) => t.includes("pod-eu-1") && t.includes("pod-us-1"));
    expect(text).toContain('"pod":"pod-eu-1"');
    expect(text).toContain('"pod":"pod-us-1"');
    expect(text.match(/event: snapshot/g)?.length).toBe(2);

    // With one region named, only that region's agents are subscribed.
    const one = await SELF.fetch(`${BASE}/v1/events?region=us-1`, { headers: auth(token) });
    const oneText = await readUntil(one, (t) => t.includes("pod-us-1"));
    expect(oneText).toContain('"pod":"pod-us-1"');
    expect(oneText).not.toContain('"pod":"pod-eu-1"');
  });

  it("GET /v1/pool collects every region; a region without agents reports no_agent", async () => {
    await agent("eu-1", async (r, ag) => {
      await ag.respond(
        r.frame.id,
        Response.json({
          region: "eu-1",
          agentId: ag.agentId,
          at: new Date().toISOString(),
          poolSize: 8,
          recycle: "replace",
          pods: [],
          queue: { depth: 0, waiters: [] },
          totals: { acquisitions: 0, conflicts: 0, queueTimeouts: 0, acquireP50Ms: null, acquireP99Ms: null },
        }),
      );
    });
    await waitForAgents(TUNNEL, "eu-1", 1);
    const token = await tenantToken({
      tenant: "tenant-admin",
      sub: TEST_ADMIN_SUBJECT,
      scope: "sandbox:admin",
    });
    const res = await SELF.fetch(`${BASE}/v1/pool`, { headers: auth(token) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      regions: Array<{ region: string; pool?: { poolSize: number }; error?: { code: string } }>;
    };
    expect(body.regions.find((r) => r.region === "eu-1")?.pool?.poolSize).toBe(8);
    expect(body.regions.find((r) => r.region === "us-1")?.error?.code).toBe("no_agent");
  });
});
