// The Role grants exactly what the agent uses. The REAL agent (cluster-agent/main.ts) runs
// in-process against devcluster under its own identity — the ServiceAccount user of
// k8s/base/rbac.yaml, with its own token and kubeconfig, configured from the rendered dev
// overlay's ConfigMap and pod template — and the API server's audit hook records every call it
// makes. Runs: http exec + replace recycling, http + scrub, api exec (pods/exec), and a pool
// scale-down; then (verb, resource, subresource) used == granted by the rendered Roles.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import type { AuditEntry } from "../../devcluster/apiserver/index.ts";
import { writeKubeconfig } from "../../devcluster/kubeconfig.ts";
import { type KObject, overlayDir, renderKustomization } from "../../k8s/render.ts";
import { ExecResultSchema, SCOPES } from "../../shared/api.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { waitFor } from "../support/lease-cluster.ts";

const dev = renderKustomization(overlayDir("dev"));
const apiOverlay = renderKustomization(overlayDir("api-exec"));
const byKind = (objs: KObject[], kind: string) => objs.filter((o) => o.kind === kind);
const sa = byKind(dev, "ServiceAccount").find((o) => o.metadata.namespace === "pi-sandbox-system");
const SA_USER = `system:serviceaccount:${sa?.metadata.namespace}:${sa?.metadata.name}`;
const config = byKind(dev, "ConfigMap").find((o) => o.metadata.name.startsWith("pi-sandbox-agent-config-"))
  ?.data as Record<string, string>;
const templateCm = byKind(dev, "ConfigMap").find((o) =>
  o.metadata.name.startsWith("pi-sandbox-pod-template-"),
)?.data as Record<string, string>;
const NS = config.SANDBOX_NAMESPACE ?? "?";
/** The agent's own namespace: the tenants' secrets and the egress CA (config default). */
const SYSTEM_NS = config.SECRETS_NAMESPACE ?? "pi-sandbox-system";
const REGION = "rbac-test";

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
/** "group/resource[/subresource]:verb" for every verb a set of Roles grants. */
function granted(roles: KObject[]): Set<string> {
  const out = new Set<string>();
  for (const r of roles) {
    for (const rule of r.rules as Rule[]) {
      for (const g of rule.apiGroups)
        for (const res of rule.resources) for (const v of rule.verbs) out.add(`${g}/${res}:${v}`);
    }
  }
  return out;
}
const usedKey = (e: AuditEntry) =>
  `${e.group}/${e.resource}${e.subresource ? `/${e.subresource}` : ""}:${e.verb}`;

let cluster: TestCluster;
const audit: AuditEntry[] = [];
let kubeconfigPath: string;
let templatePath: string;
let poolToken: string;
let signer: RelaySigner;
let publicKeys: string;
const used: Record<string, Set<string>> = {};

async function runAgent(
  name: string,
  env: Record<string, string>,
  body: (agent: RunningAgent) => Promise<void>,
): Promise<void> {
  const from = audit.length;
  const { EDGE_URL: _noTunnel, ...settings } = config;
  const started = await startAgent({
    ...settings,
    KUBECONFIG: kubeconfigPath,
    SANDBOX_POD_TEMPLATE: templatePath,
    AGENT_HOST: "127.0.0.1",
    AGENT_PORT: "0",
    METRICS_PORT: "0",
    // The overlay runs the egress proxy; the Downward API would give the pod IP.
    EGRESS_PORT: "0",
    POD_IP: "127.0.0.1",
    LOG_LEVEL: "silent",
    REGION,
    AGENT_ID: `rbac-${name}`,
    POOL_TOKEN: poolToken,
    RELAY_PUBLIC_KEYS: publicKeys,
    LEADER_LEASE_SECONDS: "2",
    ...env,
  });
  if (!started.ok) throw started.error;
  const agent = started.value;
  try {
    await body(agent);
  } finally {
    await agent.close();
  }
  used[name] = new Set(
    audit
      .slice(from)
      .filter((e) => e.user === SA_USER)
      .map(usedKey),
  );
}

/** A signed call to the agent's /v1/secrets routes, as the edge would relay it. */
async function secrets(agent: RunningAgent, method: "GET" | "PUT" | "DELETE", path: string, json?: unknown) {
  const body = json === undefined ? "" : JSON.stringify(json);
  const sig = await signer.sign({
    method,
    path,
    body,
    tenant: "tenant-a",
    subject: "rbac",
    scopes: [SCOPES.secrets],
    requestId: `rbac-${randomBytes(6).toString("hex")}`,
  });
  const res = await fetch(`${agent.url}${path}`, {
    method,
    ...(json === undefined ? {} : { body }),
    headers: { "content-type": "application/json", "x-relay-signature": sig },
    signal: AbortSignal.timeout(30_000),
  });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
}

async function exec(agent: RunningAgent, command: string) {
  const body = JSON.stringify({ command });
  const sig = await signer.sign({
    method: "POST",
    path: "/v1/exec",
    body,
    tenant: "tenant-a",
    subject: "rbac",
    scopes: [SCOPES.exec],
    requestId: `rbac-${randomBytes(6).toString("hex")}`,
  });
  const res = await fetch(`${agent.url}/v1/exec`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "x-relay-signature": sig },
    signal: AbortSignal.timeout(30_000),
  });
  expect(res.status).toBe(200);
  return ExecResultSchema.parse(await res.json());
}

const readyPods = (agent: RunningAgent, n: number) =>
  waitFor(
    `${n} ready pods`,
    () => agent.pool.snapshot().pods.filter((p) => p.state === "ready").length === n,
    60_000,
  );

beforeAll(async () => {
  const agentToken = randomBytes(24).toString("hex");
  cluster = await startTestCluster({
    namespaces: [NS, SYSTEM_NS],
    tokens: { [agentToken]: SA_USER },
    audit: (e) => audit.push(e),
  });
  kubeconfigPath = join(cluster.dir, "agent-kubeconfig");
  await writeKubeconfig(kubeconfigPath, {
    server: cluster.apiUrl,
    token: agentToken,
    user: SA_USER,
    ca: cluster.ca,
  });
  templatePath = join(cluster.dir, "sandbox-pod-template.json");
  writeFileSync(templatePath, templateCm["sandbox-pod-template.json"] ?? "");
  // Only the agent holds the pool token (its own Secret); the sandbox namespace has none.
  poolToken = randomBytes(16).toString("hex");
  const keys = await generateSigningKeyPair();
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
  publicKeys = JSON.stringify({ keys: [keys.publicJwk] });

  await runAgent("http-replace", { EXEC_MODE: "http", RECYCLE: "replace", POOL_SIZE: "2" }, async (agent) => {
    await readyPods(agent, 2);
    expect((await exec(agent, "echo hi")).stdout).toBe("hi\n");
    // Secrets: create the tenant's Secret, replace it, list, remove one (the CA was made at start).
    await secrets(agent, "PUT", "/v1/secrets/API_KEY", { value: "v1", hosts: ["api.test"] });
    await secrets(agent, "PUT", "/v1/secrets/API_KEY", { value: "v2", hosts: ["api.test"] });
    await secrets(agent, "GET", "/v1/secrets");
    await secrets(agent, "DELETE", "/v1/secrets/API_KEY");
    await readyPods(agent, 2);
  });
  await runAgent("http-scrub", { EXEC_MODE: "http", RECYCLE: "scrub", POOL_SIZE: "2" }, async (agent) => {
    await readyPods(agent, 2);
    expect((await exec(agent, "touch /workspace/x && echo ok")).stdout).toBe("ok\n");
    await readyPods(agent, 2);
  });
  await runAgent("api-replace", { EXEC_MODE: "api", RECYCLE: "replace", POOL_SIZE: "2" }, async (agent) => {
    await readyPods(agent, 2);
    expect((await exec(agent, "echo api")).stdout).toBe("api\n");
    await readyPods(agent, 2);
  });
  await runAgent("scale-down", { EXEC_MODE: "http", POOL_SIZE: "1" }, async (agent) => {
    await waitFor(
      "the pool shrunk to 1",
      async () => {
        const pods = await makeClients(cluster.kubeConfig()).core.listNamespacedPod({ namespace: NS });
        return (
          pods.items.filter((p) => !p.metadata?.deletionTimestamp).length === 1 &&
          agent.pool.snapshot().pods.length === 1
        );
      },
      60_000,
    );
  });
}, 240_000);

afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe("the agent's Role, against the calls the real agent makes", () => {
  it("every call is namespaced to the sandbox namespace (Secrets: to the agent's own), and none was refused", () => {
    const mine = audit.filter((e) => e.user === SA_USER);
    expect(mine.length).toBeGreaterThan(20);
    const expected = (e: AuditEntry) => (e.resource === "secrets" ? SYSTEM_NS : NS);
    expect(mine.filter((e) => e.namespace !== expected(e))).toEqual([]);
    expect(mine.some((e) => e.resource === "secrets" && e.verb === "update")).toBe(true);
    expect(mine.filter((e) => e.code === 401 || e.code === 403)).toEqual([]);
  });

  it("http modes (replace, scrub, scale-down) use exactly the base Role, and no pods/exec", () => {
    const httpUsed = new Set([
      ...(used["http-replace"] ?? []),
      ...(used["http-scrub"] ?? []),
      ...(used["scale-down"] ?? []),
    ]);
    const base = granted(byKind(dev, "Role"));
    expect([...httpUsed].sort()).toEqual([...base].sort());
  });

  it("api mode needs pods/exec get+create, which only the api-exec overlay grants", () => {
    const apiUsed = used["api-replace"] ?? new Set<string>();
    const all = granted(byKind(apiOverlay, "Role"));
    for (const k of apiUsed) expect(all.has(k), k).toBe(true);
    const execGrants = granted(
      byKind(apiOverlay, "Role").filter((r) => r.metadata.name === "pi-sandbox-agent-exec"),
    );
    expect([...execGrants].sort()).toEqual(["/pods/exec:create", "/pods/exec:get"]);
    expect([...apiUsed].filter((k) => k.startsWith("/pods/exec")).sort()).toEqual([...execGrants].sort());
    expect([...granted(byKind(dev, "Role"))].filter((k) => k.includes("exec"))).toEqual([]);
  });
});
