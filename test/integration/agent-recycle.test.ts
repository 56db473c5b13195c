// "Nothing is left behind for the next caller", through the real agent: with a pool of one pod,
// caller 1 (one tenant) leaves files, an escaped background process, a /dev/shm file, SysV IPC
// objects and a POSIX message queue; caller 2 (another tenant) must see none of it. Checked for both
// recycle modes (replace: a fresh pod; scrub: the same pod, reset and verified; reuse-same-tenant:
// a fresh pod, as the next caller is another tenant) and both exec modes (http: the in-pod exec
// server; api: pods/exec). Then same-tenant reuse on its own: a one-tenant burst runs on fewer pods
// than commands, and interleaved tenants never share a pod.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import { type ExecResult, ExecResultSchema, SCOPES } from "../../shared/api.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { signedAgentCall } from "../support/agent-call.ts";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { waitFor } from "../support/lease-cluster.ts";
import { LEAVE_BEHIND, LOOK_FOR_RESIDUE, RESIDUE_ALL, RESIDUE_NONE } from "../support/tenant-residue.ts";

const REGION = "recycle";
const COMBOS = [
  { recycle: "replace", execMode: "http" },
  { recycle: "scrub", execMode: "http" },
  { recycle: "replace", execMode: "api" },
  { recycle: "scrub", execMode: "api" },
  { recycle: "reuse-same-tenant", execMode: "http" },
] as const;
const REUSE_NAMESPACE = "rc-reuse-burst";

let cluster: TestCluster;
let signer: RelaySigner;
let relayPublic: string;
const poolToken = "recycle-test-pool-token-0123456789";
let seq = 0;

beforeAll(async () => {
  cluster = await startTestCluster({
    namespaces: [...COMBOS.map((c) => `rc-${c.recycle}-${c.execMode}`), REUSE_NAMESPACE],
  });
  const keys = await generateSigningKeyPair();
  relayPublic = JSON.stringify({ keys: [keys.publicJwk] });
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
}, 60_000);

/**
 * One signed /v1/exec straight to the agent; a fresh tenant per call unless one is given. The
 * bursts below queue behind pod replacements, so a call may wait longer than the default 30 s.
 */
async function exec(agent: RunningAgent, command: string, tenant?: string): Promise<ExecResult> {
  const res = await signedAgentCall(signer, agent.url, {
    method: "POST",
    path: "/v1/exec",
    body: { command, timeoutSeconds: 20 },
    tenant: tenant ?? `tenant-${++seq}`,
    scopes: [SCOPES.exec],
    signal: AbortSignal.timeout(170_000),
  });
  const json: unknown = await res.json();
  if (res.status !== 200) throw new Error(`exec ${res.status}: ${JSON.stringify(json)}`);
  return ExecResultSchema.parse(json);
}

describe.each(COMBOS)("recycle=$recycle exec=$execMode", ({ recycle, execMode }) => {
  let agent: RunningAgent;

  beforeAll(async () => {
    const started = await startAgent({
      KUBECONFIG: cluster.kubeconfigPath,
      SANDBOX_NAMESPACE: `rc-${recycle}-${execMode}`,
      POOL_TOKEN: poolToken,
      POOL_SIZE: "1",
      // One pod at most: no warm spare can be handed to the second caller while the first pod is scrubbed.
      POOL_MAX_PODS: "1",
      RECYCLE: recycle,
      EXEC_MODE: execMode,
      REGION,
      AGENT_ID: `agent-${recycle}-${execMode}`,
      AGENT_PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: process.env.DBG ? "debug" : "silent",
      RELAY_PUBLIC_KEYS: relayPublic,
      QUEUE_TIMEOUT_SECONDS: "30",
    });
    if (!started.ok) throw started.error;
    agent = started.value;
    await waitFor("1 ready pod", () => agent.pool.snapshot().pods.some((p) => p.state === "ready"), 60_000);
  }, 90_000);

  afterAll(async () => {
    await agent?.close();
  }, 30_000);

  it("gives the next tenant no file, process, shared memory or message queue of the previous one", async () => {
    const first = await exec(
      agent,
      `echo secret > /workspace/left-behind; echo tmp > /tmp/left-behind\n${LEAVE_BEHIND}\n${LOOK_FOR_RESIDUE}`,
    );
    expect(first.stderr).toBe("");
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toBe(`left\n${RESIDUE_ALL}`);

    // With a pool of one, the next caller waits for that very pod to be recycled.
    const second = await exec(agent, `ls -A /workspace /tmp | grep -c left-behind\n${LOOK_FOR_RESIDUE}`);
    expect(second.exitCode).toBe(0);
    expect(second.stdout).toBe(`0\n${RESIDUE_NONE}`);
    if (recycle === "scrub") expect(second.pod).toBe(first.pod);
    else expect(second.pod).not.toBe(first.pod);
  }, 90_000);
});

describe("recycle=reuse-same-tenant: bursts through the real agent", () => {
  let agent: RunningAgent;
  const PODS = 2;

  beforeAll(async () => {
    const started = await startAgent({
      KUBECONFIG: cluster.kubeconfigPath,
      SANDBOX_NAMESPACE: REUSE_NAMESPACE,
      POOL_TOKEN: poolToken,
      POOL_SIZE: String(PODS),
      // A fixed pool of two: a burst larger than it is served by reuse or by replacements only.
      POOL_MAX_PODS: String(PODS),
      RECYCLE: "reuse-same-tenant",
      EXEC_MODE: "http",
      REGION,
      AGENT_ID: "agent-reuse",
      AGENT_PORT: "0",
      LOG_LEVEL: process.env.DBG ? "debug" : "silent",
      RELAY_PUBLIC_KEYS: relayPublic,
      // Replacements on a busy machine take seconds each: waiting is not what is tested here.
      QUEUE_TIMEOUT_SECONDS: "150",
      TENANT_POOL_SHARE_PERCENT: "100",
    });
    if (!started.ok) throw started.error;
    agent = started.value;
    await waitFor(
      `${PODS} ready pods`,
      () => agent.pool.snapshot().pods.filter((p) => p.state === "ready").length === PODS,
      60_000,
    );
  }, 90_000);

  afterAll(async () => {
    await agent?.close();
  }, 30_000);

  /**
   * Reports what an earlier command left in the pod (entries of /workspace and /tmp, one per line,
   * then "--"), then leaves a marker of its own tenant in both.
   */
  const markAs = (tenant: string) =>
    `ls -A /workspace /tmp | grep marker; echo --; echo ${tenant} > /workspace/marker-${tenant}; echo ${tenant} > /tmp/marker-${tenant}; sleep 0.2`;

  it("a one-tenant burst runs on fewer pods than commands, each finding the pod scrubbed", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => exec(agent, markAs("solo"), "solo")));
    for (const r of results) {
      expect(r.exitCode).toBe(0);
      // Reused, but reset: not even its own tenant's earlier marker is left.
      expect(r.stdout).toBe("--\n");
    }
    const pods = new Set(results.map((r) => r.pod));
    expect(pods.size).toBeLessThan(results.length);
  }, 180_000);

  it("interleaved tenants never share a pod nor see each other's marker", async () => {
    const tenants = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? "ta" : "tb"));
    const results = await Promise.all(tenants.map((t) => exec(agent, markAs(t), t)));
    const podsOf = { ta: new Set<string>(), tb: new Set<string>() };
    results.forEach((r, i) => {
      const t = tenants[i] as "ta" | "tb";
      expect(r.exitCode).toBe(0);
      expect(r.stdout).not.toMatch(/marker-t[ab]/);
      podsOf[t].add(r.pod);
    });
    expect([...podsOf.ta].filter((p) => podsOf.tb.has(p))).toEqual([]);
  }, 180_000);
});
