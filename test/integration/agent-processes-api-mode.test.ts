// Processes and port links on an agent in `api` exec mode, against a real devcluster: pods/exec cannot keep a
// process after its request, so every process route answers 501 not_supported_in_api_mode — after
// the sandbox checks (another tenant's sandbox is still 404), and without touching the pod.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import { SandboxSchema, SCOPES } from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { type AgentCall, signedAgentCall } from "../support/agent-call.ts";
import { type LeaseCluster, startLeaseCluster, waitFor } from "../support/lease-cluster.ts";

const REGION = "test-1";
let cluster: LeaseCluster;
let agent: RunningAgent;
let signer: RelaySigner;

const call = (method: string, path: string, body?: unknown, o: Partial<AgentCall> = {}) =>
  signedAgentCall(signer, agent.url, { scopes: [SCOPES.exec], ...o, method, path, body });

beforeAll(async () => {
  cluster = await startLeaseCluster("agent-proc-api");
  const keys = await generateSigningKeyPair();
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
  const started = await startAgent(
    cluster.agentEnv({
      POOL_SIZE: "1",
      EXEC_MODE: "api",
      REGION,
      AGENT_ID: "agent-proc-api",
      AGENT_PORT: "0",
      LOG_LEVEL: "silent",
      RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [keys.publicJwk] }),
    }),
  );
  if (!started.ok) throw started.error;
  agent = started.value;
  await waitFor("1 ready pod", () => agent.pool.snapshot().pods.some((p) => p.state === "ready"), 60_000);
}, 120_000);

afterAll(async () => {
  await agent?.close();
  await cluster?.close();
}, 60_000);

describe("processes and port links in api exec mode", () => {
  it("every process route and link creation answers 501 not_supported_in_api_mode; another tenant's sandbox is 404 first", async () => {
    const made = await call("POST", "/v1/sandboxes", {});
    expect(made.status).toBe(201);
    const sb = SandboxSchema.parse(await made.json());
    const base = `/v1/sandboxes/${sb.id}/processes`;
    const routes: Array<[string, string, unknown]> = [
      ["POST", base, { command: "sleep 5" }],
      ["GET", base, undefined],
      ["GET", `${base}/7`, undefined],
      ["GET", `${base}/7/output?since=0`, undefined],
      ["POST", `${base}/7/signal`, { signal: "SIGTERM" }],
      ["DELETE", `${base}/7`, undefined],
      // Port links: no exec server in the pod to reach a port through.
      ["POST", `/v1/sandboxes/${sb.id}/ports/8000/links`, {}],
      // The terminal refuses before any upgrade, in the same order.
      ["GET", `${base}/7/tty`, undefined],
    ];
    for (const [method, path, body] of routes) {
      const res = await call(method, path, body);
      const code = ErrorEnvelopeSchema.parse(await res.json()).error.code;
      expect([method, path, res.status, code]).toEqual([method, path, 501, "not_supported_in_api_mode"]);
      const other = await call(method, path, body, { tenant: "tenant-other" });
      expect([method, path, other.status]).toEqual([method, path, 404]);
      await other.body?.cancel();
    }
    // The sandbox is untouched and still serves commands.
    const exec = await call("POST", `/v1/sandboxes/${sb.id}/exec`, { command: "echo ok" });
    expect(((await exec.json()) as { stdout: string }).stdout).toBe("ok\n");
    expect((await call("DELETE", `/v1/sandboxes/${sb.id}`)).status).toBe(204);
  });
});
