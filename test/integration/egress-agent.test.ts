// The egress proxy as the agent runs it (EGRESS=on): real devcluster pods, the agent's real pod and
// Lease caches as the proxy's only notion of who is calling, policies set through the agent's
// signed /v1/sandboxes routes. Devcluster pod IPs are loopback addresses (127.0.1.x), so a client
// bound to a pod's IP is, to the proxy, that pod; the fake internet stands in for the outside.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import {
  ExecResultSchema,
  type Sandbox,
  SandboxNetworkSchema,
  SandboxSchema,
  SCOPES,
} from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { signedAgentCall } from "../support/agent-call.ts";
import { closed, connectThrough, get, tlsOver } from "../support/egress-client.ts";
import {
  type FakeInternet,
  startFakeInternet,
  TEST_FORBIDDEN,
  testResolver,
} from "../support/fake-internet.ts";
import { freePort } from "../support/free-port.ts";
import { type LeaseCluster, startLeaseCluster, waitFor, waitForReadyPods } from "../support/lease-cluster.ts";

const REGION = "egress-1";
/** Inside a devcluster pod, the kubelet's listener that leads to the agent's proxy (and nowhere else). */
const PROXY_URL = "http://127.0.0.1:3128";
let cluster: LeaseCluster;
let agent: RunningAgent;
/** A second replica (api exec mode: commands through pods/exec): its own caches and proxy, the same pods and Leases. */
let replica: RunningAgent;
let signer: RelaySigner;
let net: FakeInternet;

const call = (method: string, path: string, body?: unknown, tenant = "tenant-a") =>
  signedAgentCall(signer, agent.url, { method, path, body, tenant, scopes: [SCOPES.exec] });

async function createSandbox(body: unknown, tenant?: string): Promise<Sandbox> {
  const res = await call("POST", "/v1/sandboxes", body, tenant);
  expect(res.status, await res.clone().text()).toBe(201);
  return SandboxSchema.parse(await res.json());
}

const podIpOf = (pod: string) => {
  const ip = agent.pool.caches.pods.get(pod)?.status?.podIP;
  if (!ip) throw new Error(`${pod} has no IP`);
  return ip;
};
const connect = (source: string, authority: string) =>
  connectThrough(agent.egress?.port ?? 0, source, authority);
const https = (host: string) => `${host}:${net.httpsPort}`;

let a: Sandbox;
let b: Sandbox;

beforeAll(async () => {
  net = await startFakeInternet();
  const proxyPort = await freePort();
  cluster = await startLeaseCluster("egress-agent", { egressProxy: { port: proxyPort, podPort: 3128 } });
  const keys = await generateSigningKeyPair();
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
  const start = async (id: string, egressPort = "0", execMode = "http") => {
    const started = await startAgent(
      cluster.agentEnv({
        POOL_SIZE: "3",
        REGION,
        AGENT_ID: id,
        AGENT_PORT: "0",
        METRICS_PORT: "0",
        LOG_LEVEL: "silent",
        RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [keys.publicJwk] }),
        EGRESS: "on",
        EGRESS_PORT: egressPort,
        EXEC_MODE: execMode,
        EGRESS_PROXY_URL: PROXY_URL,
      }),
      { egress: { resolve: testResolver, forbidden: TEST_FORBIDDEN } },
    );
    if (!started.ok) throw started.error;
    return started.value;
  };
  agent = await start("egress-agent-test", String(proxyPort));
  replica = await start("egress-agent-replica", "0", "api");
  await waitForReadyPods(agent.pool, 3);
  a = await createSandbox({ network: { allow: [https("pkgs.test")] } });
  b = await createSandbox({ network: { allow: [https("other.test")] } }, "tenant-b");
}, 120_000);

afterAll(async () => {
  await replica?.close();
  await agent?.close();
  await cluster?.close();
  await net?.close();
}, 60_000);

describe("egress through the agent's pod cache", () => {
  it("a sandbox's pod IP gets that sandbox's policy, another sandbox's pod IP that one's", async () => {
    const fromA = await connect(podIpOf(a.pod), https("pkgs.test"));
    expect(fromA.status).toBe(200);
    const tls = await tlsOver(fromA.socket, "pkgs.test", net.ca.certPem);
    expect(await get(tls, https("pkgs.test"), "/hello")).toMatch(/hello from pkgs\.test/);
    tls.destroy();
    expect((await connect(podIpOf(a.pod), https("other.test"))).refused).toBe("egress_not_allowed");

    expect((await connect(podIpOf(b.pod), https("other.test"))).status).toBe(200);
    expect((await connect(podIpOf(b.pod), https("pkgs.test"))).refused).toBe("egress_not_allowed");
  });

  it("refuses a pool pod that is no sandbox and an address no pod has", async () => {
    const free = agent.pool
      .snapshot()
      .pods.find((p) => p.state === "ready" && p.name !== a.pod && p.name !== b.pod);
    expect(free?.podIP).toBeTruthy();
    expect((await connect(free?.podIP as string, https("pkgs.test"))).refused).toBe("egress_unknown_source");
    expect((await connect("127.0.0.12", https("pkgs.test"))).refused).toBe("egress_unknown_source");
  });

  it("a sandbox created without a policy reaches nothing", async () => {
    const none = await createSandbox({});
    expect(
      SandboxNetworkSchema.parse(await (await call("GET", `/v1/sandboxes/${none.id}/network`)).json()),
    ).toEqual({
      allow: [],
      deny: [],
    });
    expect((await connect(podIpOf(none.pod), https("pkgs.test"))).refused).toBe("egress_not_allowed");
    expect((await call("DELETE", `/v1/sandboxes/${none.id}`)).status).toBe(204);
  });

  it("refuses a bad entry with 400 invalid_request naming it", async () => {
    const res = await call("POST", "/v1/sandboxes", { network: { allow: ["pkgs.test", "*"] } });
    expect(res.status).toBe(400);
    const e = ErrorEnvelopeSchema.parse(await res.json()).error;
    expect(e.code).toBe("invalid_request");
    expect(e.message).toMatch(/network\.allow\.1: "\*"/);
    const put = await call("PUT", `/v1/sandboxes/${a.id}/network`, { allow: ["exa mple.com"] });
    expect(put.status).toBe(400);
    expect(ErrorEnvelopeSchema.parse(await put.json()).error.message).toMatch(/allow\.0: "exa mple\.com"/);
  });

  it("GET/PUT network: another tenant's sandbox does not exist", async () => {
    expect((await call("GET", `/v1/sandboxes/${a.id}/network`, undefined, "tenant-b")).status).toBe(404);
    const put = await call("PUT", `/v1/sandboxes/${a.id}/network`, { allow: ["evil.test"] }, "tenant-b");
    expect(put.status).toBe(404);
    expect(ErrorEnvelopeSchema.parse(await put.json()).error.code).toBe("sandbox_not_found");
  });

  it("a PUT replaces the policy: open tunnels it forbids are closed, new ones follow it", async () => {
    const ip = podIpOf(a.pod);
    const t = await connect(ip, https("pkgs.test"));
    const tls = await tlsOver(t.socket, "pkgs.test", net.ca.certPem);
    expect(await get(tls, https("pkgs.test"), "/hello")).toMatch(/hello from pkgs\.test/);

    const put = await call("PUT", `/v1/sandboxes/${a.id}/network`, { allow: [https("other.test")] });
    expect(put.status).toBe(200);
    expect(SandboxNetworkSchema.parse(await put.json())).toEqual({ allow: [https("other.test")], deny: [] });
    await closed(tls);
    expect((await connect(ip, https("pkgs.test"))).refused).toBe("egress_not_allowed");
    expect((await connect(ip, https("other.test"))).status).toBe(200);
    expect(
      SandboxNetworkSchema.parse(await (await call("GET", `/v1/sandboxes/${a.id}/network`)).json()),
    ).toEqual({
      allow: [https("other.test")],
      deny: [],
    });
    // The other sandbox is untouched.
    expect((await connect(podIpOf(b.pod), https("other.test"))).status).toBe(200);
  });

  it("a PUT taken by one replica cuts a tunnel through another replica's proxy", async () => {
    const ip = podIpOf(b.pod);
    const t = await connectThrough(replica.egress?.port ?? 0, ip, https("other.test"));
    expect(t.status).toBe(200);
    const tls = await tlsOver(t.socket, "other.test", net.ca.certPem);
    expect(await get(tls, https("other.test"), "/hello")).toMatch(/hello from other\.test/);
    const put = await call("PUT", `/v1/sandboxes/${b.id}/network`, { deny: ["other.test"] }, "tenant-b");
    expect(put.status).toBe(200);
    await closed(tls);
    expect((await connectThrough(replica.egress?.port ?? 0, ip, https("other.test"))).refused).toBe(
      "egress_denied_by_rule",
    );
  });

  it("a deleted sandbox's open tunnels are closed and its pod IP is nobody", async () => {
    const c = await createSandbox({ network: { allow: [https("pkgs.test")] } });
    const ip = podIpOf(c.pod);
    const t = await connect(ip, https("pkgs.test"));
    const tls = await tlsOver(t.socket, "pkgs.test", net.ca.certPem);
    expect((await call("DELETE", `/v1/sandboxes/${c.id}`)).status).toBe(204);
    await closed(tls);
    await waitFor("the pod gone from the cache", () => !agent.pool.caches.pods.get(c.pod), 30_000);
    const again = await connect(ip, https("pkgs.test"));
    expect(again.refused).toBe("egress_unknown_source");
  });

  it("the agent counts its proxy's connections by decision and refusal code", async () => {
    const text = await (await fetch(`${agent.metricsUrl}/metrics`)).text();
    const count = (labels: string) =>
      Number(
        new RegExp(`^pi_sandbox_egress_connections_total\\{${labels}[^}]*\\} (\\d+)`, "m").exec(text)?.[1] ??
          0,
      );
    expect(count('decision="allowed",reason=""')).toBeGreaterThan(0);
    expect(count('decision="denied",reason="egress_not_allowed"')).toBeGreaterThan(0);
    expect(count('decision="denied",reason="egress_unknown_source"')).toBeGreaterThan(0);
    expect(text).toMatch(/^pi_sandbox_egress_bytes_total\{direction="down"[^}]*\} [1-9]/m);
  });

  it("each command in a sandbox gets the proxy variables under the sandbox's env", async () => {
    const res = await call("POST", `/v1/sandboxes/${a.id}/exec`, {
      command: 'echo "$HTTP_PROXY $https_proxy $NO_PROXY $NODE_USE_ENV_PROXY"',
    });
    expect(res.status).toBe(200);
    const r = ExecResultSchema.parse(await res.json());
    expect(r.stdout.trim()).toBe(`${PROXY_URL} ${PROXY_URL} localhost,127.0.0.1,::1 1`);
  });
});

describe("egress from inside a sandbox (devcluster's pod network, the agent's proxy)", () => {
  async function sh(id: string, command: string, through: RunningAgent = agent) {
    const res = await signedAgentCall(signer, through.url, {
      method: "POST",
      path: `/v1/sandboxes/${id}/exec`,
      body: { command, timeoutSeconds: 20 },
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return ExecResultSchema.parse(await res.json());
  }

  it("curl fails without a policy, succeeds once the host is allowed, and reaches nothing else", async () => {
    const s = await createSandbox({});
    const put = await signedAgentCall(signer, agent.url, {
      method: "PUT",
      path: `/v1/sandboxes/${s.id}/files/ca.pem`,
      body: net.ca.certPem,
    });
    expect(put.status).toBe(200);
    const url = `https://pkgs.test:${net.httpsPort}/hello`;
    const curl = `curl -sS --max-time 10 --cacert /workspace/ca.pem ${url}; echo "exit=$?"`;

    const denied = await sh(s.id, curl);
    expect(denied.stdout).not.toMatch(/hello from/);
    expect(denied.stdout).toMatch(/exit=56/); // the proxy refused the CONNECT
    expect(denied.stderr).toMatch(/403/);

    expect((await call("PUT", `/v1/sandboxes/${s.id}/network`, { allow: [https("pkgs.test")] })).status).toBe(
      200,
    );
    const allowed = await sh(s.id, curl);
    expect(allowed.stdout).toMatch(/hello from pkgs\.test/);
    expect(allowed.stdout).toMatch(/exit=0/);
    // The other exec mode (pods/exec, through the api-mode replica) gets the same variables.
    const viaApi = await sh(s.id, curl, replica);
    expect(viaApi.stdout).toMatch(/hello from pkgs\.test.*exit=0/s);

    // Past the proxy there is no network: the same host directly, and another host through it.
    const direct = await sh(
      s.id,
      `curl -sS --max-time 5 --noproxy '*' --cacert /workspace/ca.pem ${url}; echo "exit=$?"`,
    );
    expect(direct.stdout).not.toMatch(/hello from|exit=0/);
    const other = await sh(
      s.id,
      `curl -sS --max-time 10 --cacert /workspace/ca.pem https://other.test:${net.httpsPort}/; echo "exit=$?"`,
    );
    expect(other.stdout).toMatch(/exit=56/);
    expect((await call("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
  });
});
