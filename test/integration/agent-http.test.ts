// The agent's HTTP surface end to end on one machine: a real devcluster with bubblewrap pods, the
// real pool/lease manager/executor composed by cluster-agent/main.ts, and requests signed the way
// the edge signs them. Nothing of the project is replaced.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import { ExecResultSchema, ExecStreamEventSchema, PoolSnapshotSchema, SCOPES } from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { generateSigningKeyPair, type SigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { parseSse } from "../../shared/sse.ts";
import { type AgentCall, signedAgentCall } from "../support/agent-call.ts";
import { type LeaseCluster, startLeaseCluster, waitFor } from "../support/lease-cluster.ts";

const REGION = "test-1";
let cluster: LeaseCluster;
let agent: RunningAgent;
let signer: RelaySigner;
let keys: SigningKeyPair;

type CallOpts = Omit<AgentCall, "method" | "path" | "body"> & { sign?: RelaySigner };

function call(method: string, path: string, body?: unknown, o: CallOpts = {}): Promise<Response> {
  const { sign, ...rest } = o;
  return signedAgentCall(sign ?? signer, agent.url, { ...rest, method, path, body });
}

async function errorCode(res: Response): Promise<string> {
  return ErrorEnvelopeSchema.parse(await res.json()).error.code;
}

/** A captured SSE body's events, their data as JSON (through the shared codec). */
function sseEvents(text: string): Array<{ event: string; data: unknown }> {
  return parseSse(text).map((m) => ({ event: m.event, data: JSON.parse(m.data) as unknown }));
}

const heldLeases = async () => {
  const leases = await cluster.clients.coordination.listNamespacedLease({ namespace: cluster.namespace });
  return leases.items.filter((l) => l.spec?.holderIdentity && l.metadata?.name !== "pi-sandbox-pool-leader");
};

beforeAll(async () => {
  cluster = await startLeaseCluster("agent-http");
  keys = await generateSigningKeyPair();
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
  const started = await startAgent(
    cluster.agentEnv({
      POOL_SIZE: "2",
      REGION,
      AGENT_ID: "agent-http-test",
      AGENT_PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "silent",
      RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [keys.publicJwk] }),
      QUEUE_TIMEOUT_SECONDS: "5",
    }),
  );
  if (!started.ok) throw started.error;
  agent = started.value;
  await waitFor(
    "2 ready pods",
    () => agent.pool.snapshot().pods.filter((p) => p.state === "ready").length === 2,
    60_000,
  );
}, 120_000);

afterAll(async () => {
  await agent?.close();
  await cluster?.close();
}, 60_000);

describe("agent HTTP app", () => {
  it("runs a command on a leased pod and returns the full result", async () => {
    const res = await call("POST", "/v1/exec", { command: "echo out; echo err >&2; pwd; exit 3" });
    expect(res.status).toBe(200);
    const result = ExecResultSchema.parse(await res.json());
    expect(result.exitCode).toBe(3);
    expect(result.stdout).toBe("out\n/workspace\n");
    expect(result.stderr).toBe("err\n");
    expect(result.pod).toMatch(/^sandbox-/);
    // The agent names its region itself: the edge passes answers on unread.
    expect(result.region).toBe(REGION);
    expect(res.headers.get("x-request-id")).toBe(result.requestId);
    expect(await heldLeases()).toEqual([]);
  });

  it("streams output as server-sent events ending with the result", async () => {
    const res = await call(
      "POST",
      "/v1/exec",
      { command: "echo one; echo two >&2" },
      { accept: "text/event-stream" },
    );
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseEvents(await res.text()).map((e) => ExecStreamEventSchema.parse(e.data));
    expect(events[0]?.type).toBe("acquired");
    const out = events.filter((e) => e.type === "stdout").map((e) => (e.type === "stdout" ? e.data : ""));
    expect(out.join("")).toBe("one\n");
    const last = events.at(-1);
    expect(last?.type).toBe("result");
    if (last?.type === "result") {
      expect(last.result.stderr).toBe("two\n");
      // A streamed result carries the region exactly like a JSON one.
      expect(last.result.region).toBe(REGION);
    }
  });

  it("refuses a request without a relay signature, with a tampered body, or replayed", async () => {
    expect(await errorCode(await call("POST", "/v1/exec", { command: "true" }, { noSignature: true }))).toBe(
      "relay_signature_invalid",
    );
    const tampered = await call("POST", "/v1/exec", { command: "true" }, { tamperBody: '{"command":"id"}' });
    expect(tampered.status).toBe(401);
    expect(await errorCode(tampered)).toBe("relay_signature_invalid");

    const body = JSON.stringify({ command: "true" });
    const token = await signer.sign({
      method: "POST",
      path: "/v1/exec",
      body,
      tenant: "t",
      subject: "s",
      scopes: [SCOPES.exec],
      requestId: "replayed-1",
    });
    const send = () =>
      fetch(`${agent.url}/v1/exec`, { method: "POST", body, headers: { "x-relay-signature": token } });
    expect((await send()).status).toBe(200);
    const again = await send();
    expect(again.status).toBe(401);
    expect(await errorCode(again)).toBe("relay_replayed");
  });

  it("refuses a relay signed by another key", async () => {
    const other = await generateSigningKeyPair();
    const foreign = await createRelaySigner({
      privateJwk: other.privateJwk,
      audience: relayAudience(REGION),
    });
    const res = await call("POST", "/v1/exec", { command: "true" }, { sign: foreign });
    expect(res.status).toBe(401);
  });

  it("answers bad input with 400 and a stable code, and a missing scope with 403", async () => {
    const bad = await call("POST", "/v1/exec", { command: "" });
    expect(bad.status).toBe(400);
    expect(await errorCode(bad)).toBe("invalid_request");
    const notJson = await call("POST", "/v1/exec", "{nope");
    expect(notJson.status).toBe(400);
    expect(await errorCode(notJson)).toBe("invalid_json");
    const cwd = await call("POST", "/v1/exec", { command: "true", cwd: "/etc" });
    expect(cwd.status).toBe(400);
    const scope = await call("POST", "/v1/exec", { command: "true" }, { scopes: [SCOPES.chat] });
    expect(scope.status).toBe(403);
    expect(await errorCode(scope)).toBe("insufficient_scope");
    const pool = await call("GET", "/v1/pool", undefined, { scopes: [SCOPES.exec] });
    expect(pool.status).toBe(403);
  });

  it("kills the command and frees the lease when the client goes away", async () => {
    const ac = new AbortController();
    const res = await call(
      "POST",
      "/v1/exec",
      { command: "sleep 30", timeoutSeconds: 60 },
      { accept: "text/event-stream", signal: ac.signal },
    );
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    while (!seen.includes("event: acquired")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before the command started: ${seen}`);
      seen += decoder.decode(value, { stream: true });
    }
    expect((await heldLeases()).length).toBe(1);
    ac.abort();
    await waitFor("lease released after disconnect", async () => (await heldLeases()).length === 0, 15_000);
    // The pod is recycled (replace): a fresh one becomes ready and the pool is whole again.
    await waitFor(
      "pool back to 2 ready pods",
      () => agent.pool.snapshot().pods.filter((p) => p.state === "ready").length === 2,
      60_000,
    );
  }, 90_000);

  it("reports the pool to admins and streams its events", async () => {
    const snap = PoolSnapshotSchema.parse(await (await call("GET", "/v1/pool")).json());
    expect(snap.region).toBe(REGION);
    expect(snap.poolSize).toBe(2);

    const ac = new AbortController();
    const events = await call("GET", "/v1/events", undefined, { signal: ac.signal });
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const first = await reader.read();
    text += decoder.decode(first.value);
    expect(text).toContain("event: snapshot");
    await call("POST", "/v1/exec", { command: "true" });
    while (!text.includes("exec.finished")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    ac.abort();
    expect(text).toContain('"type":"lease.acquired"');
    expect(text).toContain('"type":"exec.finished"');
  });

  it("serves health and readiness without a relay, and Prometheus metrics only on the metrics port", async () => {
    expect((await fetch(`${agent.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${agent.url}/readyz`)).status).toBe(200);
    expect(agent.metricsUrl).not.toBe(agent.url);
    const metrics = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    expect(metrics).toContain("pi_sandbox_acquire_duration_seconds");
    expect(metrics).toMatch(/pi_sandbox_lease_acquisitions_total\S* [1-9]/);
    // The relay port (what the tunnel's handler serves) has no metrics; the metrics port nothing else.
    const onRelayPort = await fetch(`${agent.url}/metrics`);
    expect(onRelayPort.status).toBe(404);
    expect(await onRelayPort.text()).not.toContain("pi_sandbox_");
    expect((await fetch(`${agent.metricsUrl}/healthz`)).status).toBe(404);
    expect((await fetch(`${agent.metricsUrl}/v1/pool`)).status).toBe(404);
  });

  it("answers chat with model_not_configured naming the variables when no model is set", async () => {
    const res = await call("POST", "/v1/chat", { message: "hi", sessionId: "s1", history: [] });
    expect(res.status).toBe(503);
    const body = ErrorEnvelopeSchema.parse(await res.json());
    expect(body.error.code).toBe("model_not_configured");
    expect(body.error.message).toContain("OPENAI_MODEL");
    expect(body.error.message).toContain("--scripted-model");
  });
});
