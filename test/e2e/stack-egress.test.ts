// Egress through the whole local path: a client calls the edge (workerd), which relays over the real
// tunnel to the agent (EGRESS=on), whose sandbox runs curl in a devcluster pod; the pod's one way
// out is the kubelet's listener to the agent's proxy, which identifies the sandbox by the pod IP
// and reaches the fake internet on loopback (the only test seam: the proxy's resolver and forbidden
// ranges, so that 127.0.0.2 stands in for the outside). Never a real outside address. pip and npm
// install from a package index served there (test/support/fake-registry.ts).
import { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import { main as cliMain } from "../../sdk/typescript/src/cli.ts";
import { SandboxClient } from "../../sdk/typescript/src/index.ts";
import {
  ChatResponseSchema,
  ExecResultSchema,
  type Sandbox,
  SandboxNetworkSchema,
  SandboxSchema,
  SecretInfoSchema,
  SecretListSchema,
} from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { type EdgeHarness, startEdge, testAgentKeys, testTenantToken } from "../support/edge-harness.ts";
import {
  type FakeInternet,
  startFakeInternet,
  TEST_FORBIDDEN,
  testResolver,
} from "../support/fake-internet.ts";
import { startFakeRegistry } from "../support/fake-registry.ts";
import { freePort } from "../support/free-port.ts";
import { type LeaseCluster, startLeaseCluster, waitFor, waitForReadyPods } from "../support/lease-cluster.ts";
import {
  type RecordedRequest,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";
import { TEST_ADMIN_SUBJECT } from "../workers/fixtures/test-keys.ts";

const REGION = "eu-1";
let edge: EdgeHarness;
let cluster: LeaseCluster;
let agent: RunningAgent;
let net: FakeInternet;
let model: ScriptedOpenAI;
/** Every line the agent logged (debug and up): no secret value may be in one. */
const agentLog: string[] = [];

/**
 * One run_in_sandbox call with the command the user's message names (or a get_network call when
 * the message is "get_network"), then its answer as the reply.
 */
function responder(req: RecordedRequest): ScriptTurn {
  const messages = req.body?.messages ?? [];
  const user = [...messages].reverse().find((m) => m.role === "user");
  const tool = messages.slice(messages.indexOf(user ?? messages[0]!)).find((m) => m.role === "tool");
  if (tool) return { type: "text", text: String(tool.content ?? "") };
  if (user?.content === "get_network")
    return { type: "tool_calls", calls: [{ id: "n1", name: "get_network", arguments: {} }] };
  return {
    type: "tool_calls",
    calls: [{ id: "c1", name: "run_in_sandbox", arguments: { command: String(user?.content ?? "") } }],
  };
}

async function api(
  method: string,
  path: string,
  body?: unknown,
  tenant = "tenant-egress",
): Promise<Response> {
  const token = await testTenantToken({ tenant, scope: "sandbox:exec sandbox:secrets sandbox:chat" });
  return fetch(`${edge.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      "Content-Type": typeof body === "string" ? "application/octet-stream" : "application/json",
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
}

async function sh(id: string, command: string) {
  const res = await api("POST", `/v1/sandboxes/${id}/exec`, { command, timeoutSeconds: 20 });
  expect(res.status, await res.clone().text()).toBe(200);
  return ExecResultSchema.parse(await res.json());
}

beforeAll(async () => {
  net = await startFakeInternet();
  model = await startScriptedOpenAI({ respond: responder });
  const proxyPort = await freePort();
  cluster = await startLeaseCluster("stack-egress", { egressProxy: { port: proxyPort } });
  edge = await startEdge();
  const keys = testAgentKeys(REGION);
  const started = await startAgent(
    cluster.agentEnv({
      POOL_SIZE: "2",
      REGION,
      AGENT_ID: "stack-egress-agent",
      AGENT_PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "debug",
      EDGE_URL: edge.url,
      AGENT_KEY: JSON.stringify(keys.agentPrivateJwk),
      RELAY_PUBLIC_KEYS: JSON.stringify(keys.relayPublicKeys),
      EGRESS: "on",
      EGRESS_PORT: String(proxyPort),
      EGRESS_PROXY_URL: "http://127.0.0.1:3128",
      // Pods of /v1/exec are scrubbed and reused, so a call's policy must not outlive it on its pod.
      RECYCLE: "scrub",
      OPENAI_BASE_URL: model.baseURL,
      OPENAI_API_KEY: "x",
      OPENAI_MODEL: model.model,
    }),
    {
      egress: { resolve: testResolver, forbidden: TEST_FORBIDDEN, upstreamCa: net.ca.certPem },
      logDestination: { write: (line: string) => void agentLog.push(line) },
    },
  );
  if (!started.ok) throw started.error;
  agent = started.value;
  await waitFor("the tunnel", () => agent.tunnel?.state === "open", 30_000);
  await waitForReadyPods(agent.pool, 2);
}, 120_000);

afterAll(async () => {
  await agent?.close();
  await edge?.close();
  await cluster?.close();
  await net?.close();
  await model?.close();
}, 60_000);

describe("egress through the edge, the tunnel, the agent's proxy and devcluster's pod network", () => {
  it("curl in a sandbox fails with no policy and succeeds once its host is allowed through the edge", async () => {
    const created = await api("POST", "/v1/sandboxes", {});
    expect(created.status).toBe(201);
    const s: Sandbox = SandboxSchema.parse(await created.json());
    expect((await api("PUT", `/v1/sandboxes/${s.id}/files/ca.pem`, net.ca.certPem)).status).toBe(200);
    const curl = `curl -sS --max-time 10 --cacert /workspace/ca.pem https://pkgs.test:${net.httpsPort}/hello; echo "exit=$?"`;

    const denied = await sh(s.id, curl);
    expect(denied.stdout).toMatch(/exit=56/);
    expect(denied.stdout).not.toMatch(/hello from/);
    expect(net.seen.filter((r) => r.host.startsWith("pkgs.test"))).toEqual([]);

    const allow = [`pkgs.test:${net.httpsPort}`];
    const put = await api("PUT", `/v1/sandboxes/${s.id}/network`, { allow });
    expect(put.status).toBe(200);
    expect(SandboxNetworkSchema.parse(await put.json())).toEqual({ allow, deny: [] });
    expect(
      SandboxNetworkSchema.parse(await (await api("GET", `/v1/sandboxes/${s.id}/network`)).json()),
    ).toEqual({
      allow,
      deny: [],
    });

    const allowed = await sh(s.id, curl);
    expect(allowed.stdout).toMatch(/hello from pkgs\.test.*\n.*exit=0/s);
    expect(net.seen.some((r) => r.host.startsWith("pkgs.test") && r.path === "/hello")).toBe(true);
    expect((await api("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
  });

  it("a policy given at creation applies from the first command; a bad entry is 400 at the edge", async () => {
    const created = await api("POST", "/v1/sandboxes", {
      network: { allow: [`other.test:${net.httpsPort}`] },
    });
    expect(created.status).toBe(201);
    const s = SandboxSchema.parse(await created.json());
    expect((await api("PUT", `/v1/sandboxes/${s.id}/files/ca.pem`, net.ca.certPem)).status).toBe(200);
    const r = await sh(
      s.id,
      `curl -sS --max-time 10 --cacert /workspace/ca.pem https://other.test:${net.httpsPort}/; echo "exit=$?"`,
    );
    expect(r.stdout).toMatch(/hello from other\.test/);

    const bad = await api("PUT", `/v1/sandboxes/${s.id}/network`, { allow: ["169.254.169.254/0"] });
    expect(bad.status).toBe(400);
    expect(ErrorEnvelopeSchema.parse(await bad.json()).error.code).toBe("invalid_request");
    // Another tenant cannot read or change it.
    expect((await api("GET", `/v1/sandboxes/${s.id}/network`, undefined, "tenant-other")).status).toBe(404);
    expect((await api("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
  });

  it("the TypeScript client sets and reads the policy, and the sandbox's curl follows it", async () => {
    const client = new SandboxClient({
      baseUrl: edge.url,
      token: await testTenantToken({ tenant: "tenant-sdk", scope: "sandbox:exec" }),
    });
    await using sb = await client.sandboxes.create({ network: { allow: [`other.test:${net.httpsPort}`] } });
    expect(await sb.network()).toEqual({ allow: [`other.test:${net.httpsPort}`], deny: [] });
    await sb.files.write("ca.pem", net.ca.certPem);
    const curl = `curl -sS --max-time 10 --cacert /workspace/ca.pem https://pkgs.test:${net.httpsPort}/; echo "exit=$?"`;
    expect((await sb.exec(curl)).stdout).toMatch(/exit=56/);
    expect(await sb.setNetwork({ allow: [`pkgs.test:${net.httpsPort}`] })).toEqual({
      allow: [`pkgs.test:${net.httpsPort}`],
      deny: [],
    });
    expect((await sb.exec(curl)).stdout).toMatch(/hello from pkgs\.test.*exit=0/s);
  });
});

describe("secrets that never enter the sandbox, through the edge", () => {
  const VALUE = "sk-live-e2e-0123456789abcdef";

  it("the bound host receives the value; the sandbox, other hosts and other tenants see only the placeholder", async () => {
    const bound = `api.test:${net.httpsPort}`;
    const put = await api("PUT", "/v1/secrets/API_KEY", { value: VALUE, hosts: [bound] });
    expect(put.status, await put.clone().text()).toBe(200);
    const putText = await put.text();
    expect(putText).not.toContain(VALUE);
    expect(SecretInfoSchema.parse(JSON.parse(putText))).toMatchObject({
      name: "API_KEY",
      hosts: [bound],
      header: "Authorization",
      format: "Bearer {value}",
    });
    const listed = await api("GET", "/v1/secrets");
    const listText = await listed.text();
    expect(listText).not.toContain(VALUE);
    expect(SecretListSchema.parse(JSON.parse(listText)).secrets.map((x) => x.name)).toEqual(["API_KEY"]);

    // Tenant B: sees none, cannot delete it, cannot opt a sandbox in to it.
    const other = await api("GET", "/v1/secrets", undefined, "tenant-other");
    expect(SecretListSchema.parse(await other.json()).secrets).toEqual([]);
    const stolen = await api("DELETE", "/v1/secrets/API_KEY", undefined, "tenant-other");
    expect(stolen.status).toBe(404);
    expect(ErrorEnvelopeSchema.parse(await stolen.json()).error.code).toBe("secret_not_found");
    const borrowed = await api("POST", "/v1/sandboxes", { secrets: ["API_KEY"] }, "tenant-other");
    expect(borrowed.status).toBe(404);
    expect(ErrorEnvelopeSchema.parse(await borrowed.json()).error.code).toBe("secret_not_found");

    const created = await api("POST", "/v1/sandboxes", {
      network: { allow: [bound, `other.test:${net.httpsPort}`] },
      secrets: ["API_KEY"],
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const s = SandboxSchema.parse(await created.json());

    // The sandbox sees a placeholder, never the value, anywhere in its environment.
    const env = await sh(s.id, 'echo "key=$API_KEY"; env');
    const placeholder = /key=(pi-secret-[A-Za-z0-9_-]+)/.exec(env.stdout)?.[1];
    expect(placeholder).toBeDefined();
    expect(env.stdout).not.toContain(VALUE);
    expect(env.stdout).toMatch(/SSL_CERT_FILE=\/workspace\/\.pi-egress\/ca-bundle\.pem/);

    // To the bound host (intercepted; the sandbox trusts the cluster CA through its env), the
    // header carrying the placeholder arrives with the value.
    const before = net.seen.length;
    const r = await sh(
      s.id,
      `curl -sS --max-time 10 -H "Authorization: Bearer $API_KEY" https://${bound}/v1/models; echo "exit=$?"`,
    );
    expect(r.stdout).toMatch(/hello from api\.test.*exit=0/s);
    expect(r.stdout + r.stderr).not.toContain(VALUE);
    const atApi = net.seen.slice(before).filter((x) => x.host.startsWith("api.test"));
    expect(atApi.map((x) => x.headers.authorization)).toEqual([`Bearer ${VALUE}`]);

    // The same placeholder to an allowed host the secret is not bound to goes out as it is.
    const mark = net.seen.length;
    expect((await api("PUT", `/v1/sandboxes/${s.id}/files/ca.pem`, net.ca.certPem)).status).toBe(200);
    const o = await sh(
      s.id,
      `curl -sS --max-time 10 --cacert /workspace/ca.pem -H "Authorization: Bearer $API_KEY" https://other.test:${net.httpsPort}/; echo "exit=$?"`,
    );
    expect(o.stdout).toMatch(/hello from other\.test.*exit=0/s);
    const atOther = net.seen.slice(mark).filter((x) => x.host.startsWith("other.test"));
    expect(atOther.map((x) => x.headers.authorization)).toEqual([`Bearer ${placeholder}`]);

    // Nor is it on any Lease (the sandbox's carries its placeholder only), in either encoding.
    const leases = await cluster.clients.coordination.listNamespacedLease({ namespace: cluster.namespace });
    const leaseText = JSON.stringify(leases.items);
    expect(leaseText).toContain(placeholder as string);
    expect(leaseText).not.toContain(VALUE);
    expect(leaseText).not.toContain(Buffer.from(VALUE).toString("base64"));

    // Deleted: from then on the host is spliced, not intercepted (the sandbox sees the server's own
    // certificate), and the placeholder goes out unchanged.
    expect((await api("DELETE", "/v1/secrets/API_KEY")).status).toBe(204);
    const after = net.seen.length;
    const d = await sh(
      s.id,
      `curl -sS --max-time 10 --cacert /workspace/ca.pem -H "Authorization: Bearer $API_KEY" https://${bound}/; echo "exit=$?"`,
    );
    expect(d.stdout).toMatch(/exit=0/);
    const lastAtApi = net.seen.slice(after).filter((x) => x.host.startsWith("api.test"));
    expect(lastAtApi.map((x) => x.headers.authorization)).toEqual([`Bearer ${placeholder}`]);
    expect((await api("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
    // The agent logged every connection (the egress lines prove it logged this one) and no value.
    const log = agentLog.join("");
    expect(log).toMatch(/egress allowed api\.test/);
    expect(log).not.toContain(VALUE);
  });

  it("bad secrets are refused by name at the edge", async () => {
    const reserved = await api("PUT", "/v1/secrets/HTTPS_PROXY", { value: "x", hosts: ["api.test"] });
    expect(reserved.status).toBe(400);
    const cidr = await api("PUT", "/v1/secrets/K", { value: "x", hosts: ["10.0.0.0/8"] });
    expect(cidr.status).toBe(400);
    expect(ErrorEnvelopeSchema.parse(await cidr.json()).error.message).toContain('"10.0.0.0/8"');
    const newline = await api("PUT", "/v1/secrets/K", { value: "a\nb", hosts: ["api.test"] });
    expect(newline.status).toBe(400);
    expect((await api("DELETE", "/v1/secrets/NEVER_STORED")).status).toBe(404);
  });
});

describe("a policy on POST /v1/exec is that call's alone", () => {
  const exec = async (body: Record<string, unknown>) => {
    const res = await api("POST", "/v1/exec", { timeoutSeconds: 20, ...body });
    expect(res.status, await res.clone().text()).toBe(200);
    return ExecResultSchema.parse(await res.json());
  };
  // Through the proxy by hand, so a call without a policy is asked of the proxy too (not merely
  // lacking the variables).
  const curl = () =>
    `curl -sS --max-time 10 -o /dev/null -w "code=%{http_code}" -x http://127.0.0.1:3128 http://pkgs.test:${net.httpPort}/exec-policy; echo " exit=$?"`;

  it("reaches the allowed host; the next call on the same pod without it cannot", async () => {
    const allowed = await exec({ command: curl(), network: { allow: [`pkgs.test:${net.httpPort}`] } });
    expect(allowed.stdout).toMatch(/code=200 exit=0/);
    const reached = () => net.seen.filter((r) => r.path === "/exec-policy").length;
    expect(reached()).toBe(1);
    // The pool has two pods: call until one lands on the pod the policy was on (scrubbed, reused).
    let samePod = false;
    for (let i = 0; i < 12 && !samePod; i++) {
      const next = await exec({ command: curl() });
      expect(next.stdout).toMatch(/code=403 exit=0/);
      samePod = next.pod === allowed.pod;
    }
    expect(samePod).toBe(true);
    expect(reached()).toBe(1);
  });

  it("network on a sandbox's exec is refused (its policy is PUT)", async () => {
    const created = await api("POST", "/v1/sandboxes", {});
    const s = SandboxSchema.parse(await created.json());
    const res = await api("POST", `/v1/sandboxes/${s.id}/exec`, {
      command: "true",
      network: { allow: ["a.test"] },
    });
    expect(res.status).toBe(400);
    expect(ErrorEnvelopeSchema.parse(await res.json()).error.message).toContain(
      "PUT /v1/sandboxes/:id/network",
    );
    expect((await api("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
  });
});

describe("a policy on a chat request is that request's pod's alone", () => {
  it("the model's curl reaches the allowed host with the request's network, and not without it", async () => {
    const command = `curl -sS --max-time 10 -o /dev/null -w "code=%{http_code}" http://pkgs.test:${net.httpPort}/chat-policy; echo " exit=$?"`;
    const chat = async (body: Record<string, unknown>) => {
      const res = await api("POST", "/v1/chat", { message: command, ...body });
      expect(res.status, await res.clone().text()).toBe(200);
      return ChatResponseSchema.parse(await res.json()).reply;
    };
    expect(await chat({ network: { allow: [`pkgs.test:${net.httpPort}`] } })).toContain("code=200 exit=0");
    expect(net.seen.filter((r) => r.path === "/chat-policy")).toHaveLength(1);
    // The proxy variables are there; the proxy refuses a pod held without a policy.
    expect(await chat({})).toContain("code=403 exit=0");
    expect(net.seen.filter((r) => r.path === "/chat-policy")).toHaveLength(1);
  });
});

describe("the model is told its network and can read it, never change it", () => {
  it("request and session chats: the prompt, run_in_sandbox and get_network name the allow list", async () => {
    const allow = [`pkgs.test:${net.httpsPort}`];
    const chat = async (body: Record<string, unknown>) => {
      const before = model.completions().length;
      const res = await api("POST", "/v1/chat", { message: "get_network", ...body });
      expect(res.status, await res.clone().text()).toBe(200);
      const sent = model.completions().slice(before);
      return { response: ChatResponseSchema.parse(await res.json()), sent };
    };
    const prompt = (r: RecordedRequest | undefined) => String(r?.body?.messages[0]?.content ?? "");

    const request = await chat({ network: { allow } });
    expect(prompt(request.sent[0])).toContain(
      `only these destinations are reachable, over HTTP and HTTPS through a proxy: ${allow[0]}`,
    );
    expect(JSON.stringify(request.sent[0]?.body?.tools)).toContain(`The network reaches only ${allow[0]}`);
    expect(request.response.reply).toContain(allow[0]);
    expect(request.response.reply).toContain("You cannot change this policy");
    expect(request.response.toolCalls).toEqual([]);

    // Session mode: the session sandbox's stored policy, and the owner's PUT between turns shows.
    // (get_network takes no pod: a command makes the session's sandbox, with the turn's policy.)
    const made = await chat({ sandbox: "session", network: { allow }, message: "true" });
    expect(prompt(made.sent[0])).toContain(allow[0]);
    const { sessionId, sandboxId } = made.response;
    expect(sandboxId).toBeDefined();
    const first = await chat({ sandbox: "session", sessionId });
    expect(prompt(first.sent[0])).toContain(allow[0]);
    expect(first.response.reply).toContain(allow[0]);
    const other = [`other.test:${net.httpsPort}`];
    expect((await api("PUT", `/v1/sandboxes/${sandboxId}/network`, { allow: other })).status).toBe(200);
    const second = await chat({ sandbox: "session", sessionId });
    expect(prompt(second.sent[0])).toContain(other[0]);
    expect(prompt(second.sent[0])).not.toContain(allow[0]);
    expect(second.response.reply).toContain(other[0]);

    // With no policy: no network, in the model's words.
    const none = await chat({});
    expect(prompt(none.sent[0])).toContain("There is no network access");
    expect(none.response.reply).toContain("There is no network access");
    expect((await api("DELETE", `/v1/sandboxes/${sandboxId}`)).status).toBe(204);
  });
});

describe("the CLI and the TypeScript client: --allow, --secret, secrets put/list/rm", () => {
  async function cli(args: string[], stdin = "") {
    let stdout = "";
    let stderr = "";
    const sink = (add: (s: string) => void) =>
      new Writable({
        write(chunk, _enc, done) {
          add(String(chunk));
          done();
        },
      });
    const token = await testTenantToken({ tenant: "tenant-cli", scope: "sandbox:exec sandbox:secrets" });
    const code = await cliMain(["--url", edge.url, "--token", token, ...args], {
      stdout: sink((x) => (stdout += x)),
      stderr: sink((x) => (stderr += x)),
      stdin: Readable.from([stdin]),
      env: {},
      cwd: process.cwd(),
    });
    return { code, stdout, stderr };
  }

  it("a secret put from stdin reaches only its host; --allow opens a call's network", async () => {
    const VALUE = "cli-secret-value-42";
    const bound = `api.test:${net.httpsPort}`;
    const put = await cli(["secrets", "put", "CLI_KEY", "--host", bound], `${VALUE}\n`);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toContain("CLI_KEY");
    expect(put.stdout).not.toContain(VALUE);

    const created = await cli(["sandbox", "create", "--allow", bound, "--secret", "CLI_KEY", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const id = SandboxSchema.parse(JSON.parse(created.stdout)).id;
    const before = net.seen.length;
    const ran = await cli([
      "exec",
      "--sandbox",
      id,
      "--",
      "sh",
      "-c",
      `curl -sS --max-time 10 -H "Authorization: Bearer $CLI_KEY" https://${bound}/cli; echo " exit=$?"`,
    ]);
    expect(ran.stdout).toMatch(/hello from api\.test.*exit=0/s);
    expect(net.seen.slice(before).map((r) => r.headers.authorization)).toEqual([`Bearer ${VALUE}`]);
    const shown = await cli(["sandbox", "network", id]);
    expect(shown.stdout).toBe(`allow ${bound}\n`);

    const call = await cli([
      "exec",
      "--allow",
      `pkgs.test:${net.httpPort}`,
      "--",
      "sh",
      "-c",
      `curl -sS --max-time 10 http://pkgs.test:${net.httpPort}/cli-call`,
    ]);
    expect(call.code, call.stderr).toBe(0);
    expect(call.stdout).toMatch(/hello from pkgs\.test/);

    const client = new SandboxClient({
      baseUrl: edge.url,
      token: await testTenantToken({ tenant: "tenant-cli", scope: "sandbox:exec sandbox:secrets" }),
    });
    expect((await client.secrets.list()).map((x) => x.name)).toEqual(["CLI_KEY"]);
    const listed = await cli(["secrets", "list", "--json"]);
    expect(listed.stdout).not.toContain(VALUE);
    expect((await cli(["secrets", "rm", "CLI_KEY"])).code).toBe(0);
    expect(await client.secrets.list()).toEqual([]);
    await client.secrets.put("TS_KEY", { value: "v", hosts: ["api.test"], header: "X-Api-Key" });
    expect(await client.secrets.list()).toMatchObject([
      { name: "TS_KEY", header: "X-Api-Key", format: "{value}" },
    ]);
    await client.secrets.remove("TS_KEY");
    expect((await cli(["sandbox", "rm", id])).code).toBe(0);
    expect(agentLog.join("")).not.toContain(VALUE);
  });
});

describe("egress events on the live feed", () => {
  it("allowed and refused connections reach GET /v1/events (admins only), with no header or value", async () => {
    const admin = await testTenantToken({ tenant: "ops", sub: TEST_ADMIN_SUBJECT, scope: "sandbox:admin" });
    const tenant = await testTenantToken({ tenant: "tenant-egress", scope: "sandbox:exec" });
    expect(
      (await fetch(`${edge.url}/v1/events`, { headers: { Authorization: `Bearer ${tenant}` } })).status,
    ).toBe(403);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 60_000);
    const res = await fetch(`${edge.url}/v1/events`, {
      headers: { Authorization: `Bearer ${admin}`, Accept: "text/event-stream" },
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    const until = async (what: RegExp) => {
      while (!what.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the event stream ended before ${what}`);
        text += decoder.decode(value, { stream: true });
      }
    };
    await until(/event: snapshot/);
    const path = "/events-feed";
    const curl = `curl -sS --max-time 10 -o /dev/null -w "code=%{http_code}" -x http://127.0.0.1:3128 -H "Authorization: Bearer pi-secret-not-a-value" http://pkgs.test:${net.httpPort}${path}`;
    const go = async (network?: unknown) => {
      const r = await api("POST", "/v1/exec", { command: curl, ...(network ? { network } : {}) });
      expect(r.status).toBe(200);
    };
    await go({ allow: [`pkgs.test:${net.httpPort}`] });
    await go();
    await until(/"type":"egress\.allowed"[^\n]*"host":"pkgs\.test"/);
    await until(/"type":"egress\.denied"[^\n]*"reason":"egress_unknown_source"/);
    clearTimeout(timer);
    ac.abort();
    const allowedLine = text.split("\n").find((l) => l.includes('"type":"egress.allowed"')) ?? "";
    expect(allowedLine).toContain('"tenant":"tenant-egress"');
    // (The command line itself is in exec.started's preview: what the caller sent, not a request's header.)
    const egressLines = text.split("\n").filter((l) => l.includes('"type":"egress.'));
    expect(egressLines.length).toBeGreaterThanOrEqual(2);
    for (const l of egressLines) expect(l).not.toMatch(/pi-secret-not-a-value|authorization/i);
  });
});

describe("pip and npm install from a package index on the fake internet, through the proxy", () => {
  // pkgs.test is not a secret's host, so the proxy splices its TLS: the sandbox must trust the
  // index's own CA, passed the way a user passes a private registry's CA (--cert / --cafile).
  it("both install once the index's host is allowed, and both fail while it is not", async () => {
    const registry = await startFakeRegistry(net.ca);
    try {
      // Another host allowed: the index is refused by the policy, not for want of one.
      const created = await api("POST", "/v1/sandboxes", {
        network: { allow: [`other.test:${net.httpsPort}`] },
      });
      expect(created.status).toBe(201);
      const s = SandboxSchema.parse(await created.json());
      expect((await api("PUT", `/v1/sandboxes/${s.id}/files/ca.pem`, net.ca.certPem)).status).toBe(200);
      const index = `https://${registry.host}`;
      const pip = [
        `python3 -m pip install --no-cache-dir --disable-pip-version-check --retries 0 --timeout 10`,
        `--cert /workspace/ca.pem --index-url ${index}/simple --target /workspace/pylib ${registry.pyPackage}`,
        `&& PYTHONPATH=/workspace/pylib python3 -c "import ${registry.pyPackage} as m; print(m.MESSAGE)";`,
        `echo "exit=$?"`,
      ].join(" ");
      const npm = [
        "mkdir -p /workspace/app && cd /workspace/app && echo '{}' > package.json &&",
        `npm install --registry ${index}/ --cafile /workspace/ca.pem --fetch-retries=0 --no-audit --no-fund`,
        `--no-update-notifier ${registry.npmPackage}`,
        `&& node -p 'require("${registry.npmPackage}")';`,
        `echo "exit=$?"`,
      ].join(" ");

      const pipDenied = await sh(s.id, pip);
      expect(pipDenied.stdout).not.toMatch(/exit=0/);
      // pip hides the proxy's 403 behind "no matching distribution": the index was never reached.
      expect(pipDenied.stdout + pipDenied.stderr).toMatch(/No matching distribution/);
      const npmDenied = await sh(s.id, npm);
      expect(npmDenied.stdout).not.toMatch(/exit=0/);
      expect(registry.seen).toEqual([]);

      expect((await api("PUT", `/v1/sandboxes/${s.id}/network`, { allow: [registry.host] })).status).toBe(
        200,
      );
      const pipOk = await sh(s.id, pip);
      expect(pipOk.stdout, pipOk.stderr).toMatch(/installed through the egress proxy\nexit=0/);
      const npmOk = await sh(s.id, npm);
      expect(npmOk.stdout, npmOk.stderr).toMatch(/installed through the egress proxy\nexit=0/);
      expect(registry.seen).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^\/simple\//),
          expect.stringMatching(/\.whl$/),
          `/${registry.npmPackage}`,
          expect.stringMatching(/\.tgz$/),
        ]),
      );
      expect((await api("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
    } finally {
      await registry.close();
    }
  }, 120_000);
});
