import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadKubeConfig, makeClients } from "../../cluster-agent/k8s/client.ts";
import { type Stack, startStack } from "../../devstack/stack.ts";
import type { Sandbox } from "../../shared/api.ts";
import { bearer, metricsUrlFromLog, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 25 item 3 through the whole stack (edge in workerd, agent process, devcluster runc pods): a
// sandbox whose pod is evicted or OOM-killed answers 410 sandbox_evicted with the kubelet's reason
// and message — the call in flight and the calls after, also once the controller recycled the pod.

const tmp = tempDir("stack-evictions-");
let stack: Stack;
const REGION = "eu-1";
const EVICTION =
  'The node was low on resource: ephemeral-storage. Usage of EmptyDir volume "workspace" exceeds the limit "256Mi".';

afterAll(() => tmp.remove());

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${stack.edgeUrl}${path}`, {
    ...init,
    headers: { ...bearer(stack.tokens.tenantA), ...(init.headers as Record<string, string> | undefined) },
    signal: init.signal ?? AbortSignal.timeout(60_000),
  });
const exec = (id: string, body: object) =>
  api(`/v1/sandboxes/${id}/exec`, { method: "POST", body: JSON.stringify(body) });

async function errorOf(res: Response): Promise<[number, string, string]> {
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  return [res.status, body.error?.code ?? "(none)", body.error?.message ?? ""];
}

async function create(): Promise<Sandbox> {
  const res = await api("/v1/sandboxes", {
    method: "POST",
    body: JSON.stringify({ idleTimeoutSeconds: 300 }),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as Sandbox;
}

const k8s = () => makeClients(loadKubeConfig(stack.kubeconfig));

/** The pod is recycled by the leader: pod and Lease gone (the next calls are answered from memory). */
async function recycled(pod: string): Promise<void> {
  const ns = stack.namespaceOf(REGION);
  const { core, coordination } = k8s();
  await waitFor(
    `${pod} and its Lease gone`,
    async () => {
      const pods = await core.listNamespacedPod({ namespace: ns });
      const leases = await coordination.listNamespacedLease({ namespace: ns });
      return (
        !pods.items.some((p) => p.metadata?.name === pod) &&
        !leases.items.some((l) => l.metadata?.name === pod)
      );
    },
    30_000,
    200,
  );
}

// Both exec modes: the exec server's connection breaks with the container (http), or the kubelet's
// exec stream ends with a Failure naming OOMKilled (api, pods/exec).
describe.each(["http", "api"] as const)("exec mode %s", (mode) => {
  beforeAll(async () => {
    const dir = join(tmp.dir, mode);
    mkdirSync(dir, { recursive: true });
    stack = await startStack({
      dir,
      regions: [REGION],
      agentsPerRegion: 1,
      poolSize: 2,
      leaseTtlSeconds: 10,
      // The kubelet measures emptyDirs every 500 ms here (a real one: every 10 s, on stats up to a minute old).
      evictionIntervalMs: 500,
      agentEnv: { LOG_LEVEL: "info", LEADER_LEASE_SECONDS: "3", EXEC_MODE: mode },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
  });

  describe("the sandbox pids limit (issue 25 item 4)", () => {
    it("/v1/pool reports what the first Ready pod's cgroup says: devcluster's podPidsLimit 1024, not unlimited", async () => {
      const snap = await waitFor(
        "the agent checked a pod",
        async () => (await stack.pools()).find((p) => p.sandboxPids !== undefined),
        30_000,
        200,
      );
      expect(snap.sandboxPids).toMatchObject({ pidsMax: "1024", unlimited: false });
    });
  });

  describe("a sandbox whose pod failed explains itself", () => {
    it("evicted (status written as a kubelet writes it): the call in flight and every later call get 410 sandbox_evicted with the message", async () => {
      const sb = await create();
      const running = exec(sb.id, { command: "touch .running; sleep 30", timeoutSeconds: 60 });
      await waitFor(
        "the command runs",
        async () => (await api(`/v1/sandboxes/${sb.id}/files/.running`)).status === 200,
        30_000,
        100,
      );
      // What the kubelet's eviction manager writes: phase Failed, reason Evicted, its message.
      await k8s().core.patchNamespacedPodStatus(
        {
          name: sb.pod,
          namespace: stack.namespaceOf(REGION),
          body: { status: { phase: "Failed", reason: "Evicted", message: EVICTION } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      const inFlight = await errorOf(await running);
      expect(inFlight).toEqual([410, "sandbox_evicted", expect.stringContaining(`(Evicted): ${EVICTION}`)]);
      expect(inFlight[2]).toContain(`sandbox ${sb.id} is gone: its pod ${sb.pod} failed`);
      const next = await errorOf(await exec(sb.id, { command: "true" }));
      expect(next).toEqual([410, "sandbox_evicted", expect.stringContaining(EVICTION)]);
      await recycled(sb.pod);
      // After the recycle: still the reason, not a bare 404 sandbox_not_found.
      expect(await errorOf(await exec(sb.id, { command: "true" }))).toEqual([
        410,
        "sandbox_evicted",
        expect.stringContaining(EVICTION),
      ]);
      expect((await errorOf(await api(`/v1/sandboxes/${sb.id}`))).slice(0, 2)).toEqual([
        410,
        "sandbox_evicted",
      ]);
      expect((await errorOf(await api(`/v1/sandboxes/${sb.id}/files/a.txt`))).slice(0, 2)).toEqual([
        410,
        "sandbox_evicted",
      ]);
      // Deleting it succeeds: it is gone already.
      expect((await api(`/v1/sandboxes/${sb.id}`, { method: "DELETE" })).status).toBe(204);
    }, 120_000);

    it("over its workspace's sizeLimit (300 MiB written into the 256Mi emptyDir by a command): the kubelet evicts the pod and the next call gets 410 sandbox_evicted with its message", async () => {
      const sb = await create();
      // As on a real node the write is not refused at the limit (the test fails on an ENOSPC): the
      // command either completes or is cut short by the eviction it causes.
      const write = await exec(sb.id, {
        command: "head -c 300M /dev/zero > big && echo wrote",
        timeoutSeconds: 60,
      });
      const message = 'Usage of EmptyDir volume "workspace" exceeds the limit "256Mi". ';
      if (write.status === 200) {
        expect(await write.json()).toMatchObject({ exitCode: 0, stdout: "wrote\n" });
      } else {
        expect(await errorOf(write)).toEqual([410, "sandbox_evicted", expect.stringContaining(message)]);
      }
      // Calls keep working until the kubelet's next measurement; then the next call explains it.
      const next = await waitFor(
        "a call after the eviction",
        async () => {
          const res = await exec(sb.id, { command: "true" });
          return res.status === 200 ? undefined : errorOf(res);
        },
        30_000,
        200,
      );
      expect(next).toEqual([410, "sandbox_evicted", expect.stringContaining(`(Evicted): ${message}`)]);
      expect(await errorOf(await api(`/v1/sandboxes/${sb.id}/files/big`))).toEqual([
        410,
        "sandbox_evicted",
        expect.stringContaining(message),
      ]);
    }, 120_000);

    it("OOM-killed (a command allocating twice the pod's 512Mi limit): the call and later calls get 410 sandbox_evicted (OOMKilled)", async () => {
      const sb = await create();
      const res = await exec(sb.id, {
        command: `node -e 'const a=[]; for (let i = 0; i < 1024; i++) a.push(Buffer.alloc(1 << 20, 1))'; sleep 5`,
        timeoutSeconds: 60,
      });
      expect(await errorOf(res)).toEqual([
        410,
        "sandbox_evicted",
        expect.stringMatching(/failed \(OOMKilled\)/),
      ]);
      await recycled(sb.pod);
      expect(await errorOf(await exec(sb.id, { command: "true" }))).toEqual([
        410,
        "sandbox_evicted",
        expect.stringMatching(
          /\(OOMKilled\): container "sandbox" was killed for using more memory than its limit \(512Mi\)/,
        ),
      ]);
    }, 120_000);

    it("a one-shot /v1/exec whose pod is OOM-killed gets 410 sandbox_evicted naming it", async () => {
      const res = await api("/v1/exec", {
        method: "POST",
        // No `sleep` after it: the exec server may answer (killed by SIGKILL) before the kubelet
        // kills the container, so the agent waits for the pod's status to name the OOM kill.
        body: JSON.stringify({
          command: `node -e 'const a=[]; for (let i = 0; i < 1024; i++) a.push(Buffer.alloc(1 << 20, 1))'`,
          timeoutSeconds: 60,
        }),
      });
      expect(await errorOf(res)).toEqual([
        410,
        "sandbox_evicted",
        expect.stringMatching(/^the pod sandbox-[a-z0-9]+ running this request failed \(OOMKilled\)/),
      ]);
    }, 120_000);

    it("the leader counts them by the kubelet's reason and logs each with its message", async () => {
      const agent = stack.agents[0]!;
      const url = metricsUrlFromLog(agent.logFile);
      expect(url).toBeDefined();
      const count = (text: string, reason: string) =>
        Number(
          new RegExp(`^pi_sandbox_pod_failures_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`, "m").exec(
            text,
          )?.[1] ?? 0,
        );
      const text = await waitFor(
        "the failures counted",
        async () => {
          const t = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
          return count(t, "Evicted") >= 2 && count(t, "OOMKilled") >= 2 ? t : undefined;
        },
        20_000,
        200,
      );
      expect([count(text, "Evicted"), count(text, "OOMKilled")]).toEqual([2, 2]);
      const log = readFileSync(agent.logFile, "utf8");
      expect(log).toMatch(/"reason":"Evicted".*"pod failed"|"pod failed".*"reason":"Evicted"/);
      expect(log).toContain("exceeds the limit");
    });
  });
});
