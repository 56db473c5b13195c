// "Nothing is left behind for the next caller", through the real agent: with a pool of one pod,
// caller 1 (one tenant) leaves files, an escaped background process, a /dev/shm file, SysV IPC
// objects and a POSIX message queue; caller 2 (another tenant) must see none of it. Checked for both
// recycle modes (replace: a fresh pod; scrub: the same pod, reset and verified) and both exec
// modes (http: the in-pod exec server; api: pods/exec).
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
] as const;

let cluster: TestCluster;
let signer: RelaySigner;
let relayPublic: string;
const poolToken = "recycle-test-pool-token-0123456789";
let seq = 0;

beforeAll(async () => {
  cluster = await startTestCluster({ namespaces: COMBOS.map((c) => `rc-${c.recycle}-${c.execMode}`) });
  const keys = await generateSigningKeyPair();
  relayPublic = JSON.stringify({ keys: [keys.publicJwk] });
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
}, 60_000);

async function exec(agent: RunningAgent, command: string): Promise<ExecResult> {
  const res = await signedAgentCall(signer, agent.url, {
    method: "POST",
    path: "/v1/exec",
    body: { command, timeoutSeconds: 20 },
    tenant: `tenant-${++seq}`,
    scopes: [SCOPES.exec],
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
