// EXEC_MODE=pydantic-http against a real devcluster whose sandbox pods run a FastAPI + uvicorn
// server written to pydantic-ai-backends' http contract (test/support/pydantic-contract/server.py,
// the "user's image"), with the pod template of k8s/components/pydantic-http. The real agent
// (cluster-agent/main.ts) serves /v1/exec, sandboxes, files and processes through it; requests are
// signed as the edge signs them.
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContractExecutor } from "../../cluster-agent/exec/contract-exec.ts";
import { ContractFiles } from "../../cluster-agent/exec/contract-files.ts";
import type { ExecTarget } from "../../cluster-agent/exec/executor.ts";
import { type RunningAgent, startAgent } from "../../cluster-agent/main.ts";
import { POOL_LABEL_SELECTOR } from "../../cluster-agent/pool-state/labels.ts";
import { ExecResultSchema, ExecStreamEventSchema, SandboxSchema, SCOPES } from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import { createRelaySigner, type RelaySigner, relayAudience } from "../../shared/relay-signing.ts";
import { parseSse } from "../../shared/sse.ts";
import { type AgentCall, signedAgentCall } from "../support/agent-call.ts";
import { type LeaseCluster, startLeaseCluster, waitFor } from "../support/lease-cluster.ts";
import {
  CONTRACT_IMAGE,
  CONTRACT_OUTPUT_CAP,
  contractImage,
  contractPodTemplate,
} from "../support/pydantic-contract/image.ts";

const REGION = "test-1";
const NAMESPACE = "pydantic-http";
let cluster: LeaseCluster;
let agent: RunningAgent;
let signer: RelaySigner;

const call = (method: string, path: string, body?: unknown, o: Partial<AgentCall> = {}) =>
  signedAgentCall(signer, agent.url, { scopes: [SCOPES.exec], ...o, method, path, body });

async function exec(body: Record<string, unknown>) {
  const res = await call("POST", "/v1/exec", body);
  const json = (await res.json()) as unknown;
  if (res.status !== 200) throw new Error(`${res.status} ${JSON.stringify(json)}`);
  return ExecResultSchema.parse(json);
}

async function errorOf(res: Response): Promise<[number, string, string]> {
  const e = ErrorEnvelopeSchema.parse(await res.json()).error;
  return [res.status, e.code, e.message];
}

const sandboxPods = async () =>
  (await cluster.clients.core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: POOL_LABEL_SELECTOR }))
    .items;

/** A Ready sandbox pod nobody holds, as an executor's target (fence 0: the contract has none). */
async function freePod(): Promise<ExecTarget> {
  await waitFor("a ready pod", () => agent.pool.snapshot().pods.some((p) => p.state === "ready"), 60_000);
  const name = agent.pool.snapshot().pods.find((p) => p.state === "ready")?.name;
  const pod = (await sandboxPods()).find((p) => p.metadata?.name === name);
  return { namespace: NAMESPACE, pod: name ?? "", podIP: pod?.status?.podIP ?? "", fence: 0 };
}

/** No pod held by a request (sandboxes hold theirs as `sandbox:…`; the leader election its own Lease). */
const noLeaseHeld = async () =>
  (await cluster.clients.coordination.listNamespacedLease({ namespace: NAMESPACE })).items.every((l) => {
    const h = l.spec?.holderIdentity;
    return !h || h.startsWith("sandbox:") || l.metadata?.name === "pi-sandbox-pool-leader";
  });

beforeAll(async () => {
  const [images, template] = await Promise.all([contractImage(), contractPodTemplate()]);
  cluster = await startLeaseCluster(NAMESPACE, { images });
  const keys = await generateSigningKeyPair();
  signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience(REGION) });
  const started = await startAgent(
    cluster.agentEnv({
      EXEC_MODE: "pydantic-http",
      SANDBOX_IMAGE: CONTRACT_IMAGE,
      SANDBOX_POD_TEMPLATE: template,
      POOL_SIZE: "2",
      REGION,
      AGENT_ID: "agent-pydantic-http",
      AGENT_PORT: "0",
      METRICS_PORT: "0",
      LOG_LEVEL: "silent",
      RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [keys.publicJwk] }),
    }),
  );
  if (!started.ok) throw started.error;
  agent = started.value;
  await waitFor(
    "2 ready pods",
    () => agent.pool.snapshot().pods.filter((p) => p.state === "ready").length === 2,
    120_000,
  );
}, 600_000);

afterAll(async () => {
  await agent?.close();
  await cluster?.close();
}, 60_000);

describe("EXEC_MODE=pydantic-http: a pool whose pods run a FastAPI server written to the contract", () => {
  it("gives each pod its own token as SANDBOX_EXEC_TOKEN and SANDBOX_PORT=8080, never POOL_TOKEN", async () => {
    const pods = await sandboxPods();
    expect(pods.length).toBeGreaterThan(0);
    for (const p of pods) {
      const env = new Map((p.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
      expect(env.get("SANDBOX_PORT")).toBe("8080");
      expect(env.get("SANDBOX_EXEC_TOKEN")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(env.get("SANDBOX_EXEC_TOKEN")).not.toBe(cluster.poolToken);
      expect(env.has("POOL_TOKEN")).toBe(false);
    }
  });

  it("runs a command: stdout and stderr arrive combined in stdout, exit code kept", async () => {
    const r = await exec({ command: "echo out; echo err >&2; pwd; exit 3" });
    expect([r.exitCode, r.stdout, r.stderr, r.truncated, r.timedOut]).toEqual([
      3,
      "out\nerr\n/workspace\n",
      "",
      false,
      false,
    ]);
    await waitFor("the lease released", noLeaseHeld, 10_000);
  });

  it("passes stdin, cwd and env through the wrapper, and nothing of the server's environment", async () => {
    const r = await exec({
      command: 'cat; pwd; echo "$FOO"; echo "token:$SANDBOX_EXEC_TOKEN."',
      stdin: "from stdin\n",
      cwd: "/workspace",
      env: { FOO: 'it\'s "quoted" $HOME' },
    });
    expect(r.stdout).toBe('from stdin\n/workspace\nit\'s "quoted" $HOME\ntoken:.\n');
    expect(r.exitCode).toBe(0);
  });

  it("returns the exact bytes with outputEncoding base64 (the contract's text would not keep them)", async () => {
    const r = await exec({ command: "printf '\\377\\000\\001\\200'", outputEncoding: "base64" });
    expect(Buffer.from(r.stdout, "base64")).toEqual(Buffer.from([0xff, 0, 1, 0x80]));
  });

  it("serves a streamed exec: the output arrives in one piece, then the result", async () => {
    const res = await call(
      "POST",
      "/v1/exec",
      { command: "echo one; echo two >&2" },
      { accept: "text/event-stream" },
    );
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = parseSse(await res.text())
      .map((m) => ExecStreamEventSchema.parse(JSON.parse(m.data)))
      // A replacement pod may still be starting: the wait is not what this test is about.
      .filter((e) => e.type !== "queued");
    expect(events.map((e) => e.type)).toEqual(["acquired", "stdout", "result"]);
    expect(events[1]?.type === "stdout" && events[1].data).toBe("one\ntwo\n");
  });

  it("kills a command at its timeout (the wrapper's, before the server's)", async () => {
    const r = await exec({ command: "echo started; sleep 30", timeoutSeconds: 1 });
    expect([r.timedOut, r.exitCode, r.signal, r.stdout]).toEqual([true, null, "SIGKILL", "started\n"]);
  });

  it("surfaces the server's truncation: output over its cap is cut and marked truncated", async () => {
    const r = await exec({ command: "head -c 200000 /dev/zero | tr '\\0' a" });
    expect(r.truncated).toBe(true);
    expect(r.exitCode).toBe(0);
    // The cap holds base64 text: 3/4 of it in bytes.
    expect(r.stdout).toBe("a".repeat((CONTRACT_OUTPUT_CAP / 4) * 3));
  });

  it("a cwd that is not a directory in the pod is the caller's error (the wrapper refuses it)", async () => {
    const [status, code, message] = await errorOf(
      await call("POST", "/v1/exec", { command: "true", cwd: "/workspace/missing" }),
    );
    expect([status, code, message]).toEqual([
      400,
      "invalid_request",
      expect.stringMatching(/not an existing directory/),
    ]);
  });

  it("answers every process route 501 not_supported_in_contract_mode", async () => {
    const made = await call("POST", "/v1/sandboxes", {});
    const sb = SandboxSchema.parse(await made.json());
    const res = await call("POST", `/v1/sandboxes/${sb.id}/processes`, { command: "sleep 5" });
    const [status, code, message] = await errorOf(res);
    expect([status, code]).toEqual([501, "not_supported_in_contract_mode"]);
    expect(message).toMatch(/pydantic-ai-backends/);
    expect((await call("DELETE", `/v1/sandboxes/${sb.id}`)).status).toBe(204);
  });

  it("serves a sandbox's files through /exec: write, read, list, remove, and paths outside refused", async () => {
    const made = await call("POST", "/v1/sandboxes", {});
    expect(made.status).toBe(201);
    const sb = SandboxSchema.parse(await made.json());
    const base = `/v1/sandboxes/${sb.id}/files`;
    const text = "héllo 'quoted' $(not run)\n";
    expect((await call("PUT", `${base}/dir/a.txt`, text)).status).toBe(200);
    const got = await call("GET", `${base}/dir/a.txt`);
    expect([got.status, await got.text()]).toEqual([200, text]);
    const list = await call("GET", `${base}/dir`);
    expect(((await list.json()) as { entries: Array<{ name: string; size: number }> }).entries).toEqual([
      expect.objectContaining({ name: "a.txt", type: "file", size: Buffer.byteLength(text) }),
    ]);
    // Recursive: the walk goes level by level through the server's /exec (its output through tee).
    expect((await call("PUT", `${base}/dir/sub/b.txt`, "b")).status).toBe(200);
    const deep = await call("GET", `${base}/dir?recursive=1`);
    expect(((await deep.json()) as { entries: Array<{ name: string }> }).entries.map((e) => e.name)).toEqual([
      "a.txt",
      "sub",
      "sub/b.txt",
    ]);
    expect((await call("DELETE", `${base}/dir/sub`)).status).toBe(204);
    // A symlink out of the workspace is resolved in the pod and refused.
    await call("POST", `/v1/sandboxes/${sb.id}/exec`, { command: "ln -s /etc out" });
    expect(await errorOf(await call("GET", `${base}/out/passwd`))).toEqual(
      expect.arrayContaining([400, "invalid_path"]),
    );
    expect((await call("DELETE", `${base}/dir/a.txt`)).status).toBe(204);
    expect(await errorOf(await call("GET", `${base}/dir/a.txt`))).toEqual(
      expect.arrayContaining([404, "file_not_found"]),
    );
    // The sandbox's commands see the same files.
    const ls = await call("POST", `/v1/sandboxes/${sb.id}/exec`, { command: "ls -A dir | wc -l; rm out" });
    expect(((await ls.json()) as { stdout: string }).stdout).toBe("0\n");
    expect((await call("DELETE", `/v1/sandboxes/${sb.id}`)).status).toBe(204);
  });

  it("files are binary-safe; a write larger than one command is staged in pieces; a read over the server's cap is payload_too_large", async () => {
    const target = await freePod();
    const files = new ContractFiles({ poolToken: cluster.poolToken });
    const signal = () => AbortSignal.timeout(60_000);
    const every = Uint8Array.from({ length: 256 }, (_, i) => i);
    const w = await files.write(target, "bin/all.bin", every, { signal: signal(), maxBytes: 1 << 20 });
    expect(w).toEqual({ ok: true, value: { path: "/workspace/bin/all.bin", size: 256 } });
    const r = await files.read(target, "bin/all.bin", { signal: signal() });
    if (!r.ok || r.value.kind !== "file") throw new Error(`read: ${JSON.stringify(r)}`);
    expect(new Uint8Array(await new Response(r.value.body).arrayBuffer())).toEqual(every);

    const big = randomBytes(200 * 1024);
    const wb = await files.write(target, "bin/big.bin", big, { signal: signal(), maxBytes: 1 << 20 });
    expect(wb.ok && wb.value.size).toBe(big.byteLength);
    const sum = await new ContractExecutor({ poolToken: cluster.poolToken }).exec(target, {
      command: "sha256sum bin/big.bin; ls -A /tmp | grep -c pi-upload",
      timeoutMs: 10_000,
      signal: signal(),
    });
    // The pieces went to /tmp and are gone once the file is in place.
    expect(sum.ok && sum.value.stdout).toBe(
      `${createHash("sha256").update(big).digest("hex")}  bin/big.bin\n0\n`,
    );
    const rb = await files.read(target, "bin/big.bin", { signal: signal() });
    expect(!rb.ok && rb.error.code).toBe("payload_too_large");
  });

  it("our own cap holds below the server's: the rest is read and dropped in the pod", async () => {
    const target = await freePod();
    const small = new ContractExecutor({ poolToken: cluster.poolToken, outputCapBytes: 1000 });
    // The command writes all 50000 bytes (no SIGPIPE cut it short): it reaches its `echo`.
    const r = await small.exec(target, {
      command: "head -c 50000 /dev/zero | tr '\\0' b; echo done >&2; test -e /nonexistent",
      timeoutMs: 10_000,
      signal: AbortSignal.timeout(30_000),
    });
    if (!r.ok) throw r.error;
    expect([r.value.stdout, r.value.truncated, r.value.exitCode]).toEqual(["b".repeat(1000), true, 1]);
  });

  it("an abort kills the command's whole group in the pod (a second command through the contract)", async () => {
    const target = await freePod();
    const executor = new ContractExecutor({ poolToken: cluster.poolToken });
    /** How many processes in the pod are exactly `sleep <n>` (one cmdline per line). */
    const sleeping = async (n: string) => {
      const r = await executor.exec(target, {
        command: `for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < "$f" 2>/dev/null; echo; done | grep -c '^sleep ${n} $'`,
        timeoutMs: 5_000,
        signal: AbortSignal.timeout(30_000),
      });
      return r.ok ? Number(r.value.stdout.trim()) : -1;
    };
    const ac = new AbortController();
    const call = executor.exec(target, {
      command: "sleep 301 & sleep 302 & wait",
      timeoutMs: 60_000,
      signal: ac.signal,
    });
    await waitFor("the command to start", async () => (await sleeping("302")) === 1);
    ac.abort();
    const r = await call;
    expect(!r.ok && r.error.code).toBe("request_cancelled");
    await waitFor("no sleep left", async () => (await sleeping("30[12]")) === 0);
  });

  it("a wrong token is refused by the server: sandbox_failed naming its 401", async () => {
    const target = await freePod();
    const wrong = new ContractExecutor({ poolToken: "not-the-pool-token" });
    const r = await wrong.exec(target, {
      command: "echo hi",
      timeoutMs: 5_000,
      signal: AbortSignal.timeout(30_000),
    });
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
    expect(!r.ok && r.error.message).toMatch(/401/);
    // Straight to the server, as anyone in the cluster could try.
    const direct = await fetch(`http://${target.podIP}:8080/exec`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-sandbox-token": "guess" },
      body: JSON.stringify({ command: "id", timeout_seconds: 5 }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(direct.status).toBe(401);
    await direct.body?.cancel();
  });

  it("a server answering something that is not the contract's JSON: sandbox_failed saying so, lease released", async () => {
    const [status, code, message] = await errorOf(
      await call("POST", "/v1/exec", { command: "echo PI_TEST_MALFORMED" }),
    );
    expect([status, code]).toEqual([502, "sandbox_failed"]);
    expect(message).toMatch(/not JSON/);
    await waitFor("the lease released", noLeaseHeld, 10_000);
    expect((await exec({ command: "echo still serving" })).stdout).toBe("still serving\n");
  });

  it("a server that never answers: sandbox_failed after the timeout and its grace, lease released", async () => {
    const [status, code, message] = await errorOf(
      await call("POST", "/v1/exec", { command: "echo PI_TEST_HANG", timeoutSeconds: 1 }),
    );
    expect([status, code]).toEqual([502, "sandbox_failed"]);
    expect(message).toMatch(/no answer within 11000 ms/);
    await waitFor("the lease released", noLeaseHeld, 10_000);
  }, 60_000);
});
