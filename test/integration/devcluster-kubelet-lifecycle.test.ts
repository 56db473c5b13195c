import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevCluster } from "../../devcluster/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";
import { waitFor } from "../support/wait-for.ts";

// Pod lifecycle through the devcluster API server and the process kubelet, seen only through the
// Kubernetes API (client-node) and the host: binding, env, pod IPs, readiness, exit, deletion.
type DevCluster = Awaited<ReturnType<typeof startDevCluster>>;
const NS = "default";
let cluster: DevCluster;
let core: CoreV1Api;
let imageDir: string;
let dir: string;

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  dir = await mkdtemp(join(tmpdir(), "devcluster-kubelet-"));
  cluster = await startDevCluster({
    dir,
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    // The eviction manager's 10 s period would only slow the emptyDir case down.
    evictionIntervalMs: 200,
  });
  core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespacedSecret({
    namespace: NS,
    body: { metadata: { name: "pod-secret" }, stringData: { token: "s3cret-value" } },
  });
});

afterAll(async () => {
  await cluster?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

const readPod = (name: string) => core.readNamespacedPod({ name, namespace: NS });
const condition = (pod: V1Pod, type: string) => pod.status?.conditions?.find((c) => c.type === type)?.status;

function waitReady(name: string): Promise<V1Pod> {
  return waitFor(`${name} Ready`, async () => {
    const p = await readPod(name);
    return condition(p, "Ready") === "True" ? p : undefined;
  });
}

async function waitGone(name: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    `${name} deleted`,
    async () => {
      try {
        await readPod(name);
        return undefined;
      } catch (err) {
        return (err as { code?: number }).code === 404 ? true : undefined;
      }
    },
    timeoutMs,
  );
}

function httpGetJson(url: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 3000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** Host PIDs whose command line contains `marker`: how a test sees a sandbox from outside. */
async function hostProcessesWith(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmd = await readFile(`/proc/${name}/cmdline`, "utf8");
      if (cmd.includes(marker)) out.push(Number(name));
    } catch {
      // exited
    }
  }
  return out;
}

/** Directories named `uid` anywhere under the cluster dir: the kubelet's per-pod state. */
async function stateDirsFor(uid: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && e.name === uid).map((e) => join(e.parentPath, e.name));
}

describe("devcluster kubelet: node and scheduling", () => {
  it("registers its Node with InternalIP, kubelet port and Ready=True", async () => {
    const nodes = await core.listNode();
    expect(nodes.items.length).toBeGreaterThanOrEqual(1);
    const node = nodes.items[0]!;
    expect(node.status?.addresses).toContainEqual({ type: "InternalIP", address: "127.0.0.1" });
    expect(node.status?.daemonEndpoints?.kubeletEndpoint?.Port).toBe(
      Number(new URL(cluster.kubelet.endpoint).port),
    );
    expect(node.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
  });
});

describe("devcluster kubelet: running pods", () => {
  it("binds, starts and readies pods with unique IPs and resolved env", async () => {
    const names = ["life-a", "life-b"];
    for (const name of names) {
      await core.createNamespacedPod({
        namespace: NS,
        body: healthPod(name, {
          env: [
            { name: "SECRET_TOKEN", valueFrom: { secretKeyRef: { name: "pod-secret", key: "token" } } },
            { name: "MY_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            { name: "MY_NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
            { name: "MY_NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
            { name: "MY_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
            { name: "GREETING", value: "hello $(MY_NAME)" },
          ],
        }),
      });
    }
    const pods = await Promise.all(names.map(waitReady));
    const ips = pods.map((p) => p.status?.podIP);
    for (const ip of ips) expect(ip).toMatch(/^127\.0\.1\.\d+$/);
    expect(new Set(ips).size).toBe(2);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBeTruthy();
      expect(p.status?.phase).toBe("Running");
      expect(p.status?.hostIP).toBe("127.0.0.1");
      expect(p.status?.podIPs).toEqual([{ ip: p.status?.podIP }]);
      expect(p.status?.startTime).toBeDefined();
      for (const t of ["PodScheduled", "Initialized", "ContainersReady", "Ready"])
        expect(condition(p, t)).toBe("True");
      const cs = p.status?.containerStatuses?.[0];
      expect(cs?.name).toBe("main");
      expect(cs?.ready).toBe(true);
      expect(cs?.state?.running?.startedAt).toBeDefined();

      // The server inside listens on exactly the pod IP, and sees the env the kubelet resolved.
      const env = await httpGetJson(`http://${p.status?.podIP}:8080/env`);
      expect(env.SECRET_TOKEN).toBe("s3cret-value");
      expect(env.MY_NAME).toBe(p.metadata?.name);
      expect(env.MY_NS).toBe(NS);
      expect(env.MY_NODE).toBe(p.spec?.nodeName);
      expect(env.MY_IP).toBe(p.status?.podIP);
      expect(env.LISTEN_HOST).toBe(p.status?.podIP);
      expect(env.GREETING).toBe(`hello ${p.metadata?.name}`);
      // The kubelet's own environment does not leak in.
      expect(env.VITEST).toBeUndefined();
    }
    for (const name of names) await core.deleteNamespacedPod({ name, namespace: NS });
    await Promise.all(names.map((n) => waitGone(n)));
  });

  it("flips Ready from False to True when the readiness probe starts passing", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("late-ready", { env: [{ name: "READY_AFTER_MS", value: "2500" }] }),
    });
    const running = await waitFor("late-ready Running", async () => {
      const p = await readPod("late-ready");
      return p.status?.phase === "Running" ? p : undefined;
    });
    expect(condition(running, "Ready")).toBe("False");
    expect(running.status?.containerStatuses?.[0]?.ready).toBe(false);
    const ready = await waitReady("late-ready");
    expect(condition(ready, "ContainersReady")).toBe("True");
    await core.deleteNamespacedPod({ name: "late-ready", namespace: NS });
    await waitGone("late-ready");
  });

  it("a startup probe keeps the container not started and not Ready until it passes", async () => {
    const body = healthPod("starts-late", { probe: false, env: [{ name: "READY_AFTER_MS", value: "2500" }] });
    body.spec!.containers[0]!.startupProbe = {
      httpGet: { path: "/health", port: 8080 },
      periodSeconds: 1,
      failureThreshold: 30,
    };
    await core.createNamespacedPod({ namespace: NS, body });
    const running = await waitFor("starts-late Running", async () => {
      const p = await readPod("starts-late");
      return p.status?.phase === "Running" ? p : undefined;
    });
    expect(running.status?.containerStatuses?.[0]?.started).toBe(false);
    expect(condition(running, "Ready")).toBe("False");
    const ready = await waitReady("starts-late");
    expect(ready.status?.containerStatuses?.[0]?.started).toBe(true);
    await core.deleteNamespacedPod({ name: "starts-late", namespace: NS });
    await waitGone("starts-late");
  });

  it("kills a container whose startup probe never passes", async () => {
    const body = healthPod("never-starts", { probe: false });
    body.spec!.containers[0]!.startupProbe = {
      httpGet: { path: "/no-such-path", port: 8080 },
      periodSeconds: 1,
      failureThreshold: 2,
    };
    await core.createNamespacedPod({ namespace: NS, body });
    // Stopped with SIGTERM, which the server handles: it exits 0, so the phase is Succeeded, as on a real node.
    const failed = await waitFor("never-starts stopped", async () => {
      const p = await readPod("never-starts");
      return p.status?.containerStatuses?.[0]?.state?.terminated ? p : undefined;
    });
    expect(["Succeeded", "Failed"]).toContain(failed.status?.phase);
    expect(failed.status?.containerStatuses?.[0]?.started).toBe(false);
    expect(condition(failed, "Ready")).toBe("False");
    await core.deleteNamespacedPod({ name: "never-starts", namespace: NS });
    await waitGone("never-starts");
  });

  it("restarts a container whose liveness probe fails (restartPolicy Always)", async () => {
    const body = healthPod("liveness", {
      restartPolicy: "Always",
      // Every start is unhealthy after this long; 4 s leaves the restarted container a running
      // window that the 100 ms poll cannot miss on a loaded machine (1.5 s once could).
      env: [{ name: "UNHEALTHY_AFTER_MS", value: "4000" }],
    });
    body.spec!.containers[0]!.livenessProbe = {
      httpGet: { path: "/health", port: 8080 },
      periodSeconds: 1,
      failureThreshold: 1,
    };
    await core.createNamespacedPod({ namespace: NS, body });
    const restarted = await waitFor("liveness restart", async () => {
      const p = await readPod("liveness");
      const cs = p.status?.containerStatuses?.[0];
      return (cs?.restartCount ?? 0) >= 1 && cs?.state?.running ? p : undefined;
    });
    expect(restarted.status?.phase).toBe("Running");
    expect(restarted.status?.containerStatuses?.[0]?.lastState?.terminated).toBeDefined();
    await core.deleteNamespacedPod({ name: "liveness", namespace: NS });
    await waitGone("liveness");
  });

  it("reuses a freed pod IP", async () => {
    await core.createNamespacedPod({ namespace: NS, body: healthPod("ip-1") });
    const first = await waitReady("ip-1");
    await core.deleteNamespacedPod({ name: "ip-1", namespace: NS });
    await waitGone("ip-1");
    await core.createNamespacedPod({ namespace: NS, body: healthPod("ip-2") });
    const second = await waitReady("ip-2");
    // ip-1's address was free again (a graceful delete completes only after the kubelet stopped the
    // sandbox), and addresses are handed out lowest-first: ip-2 gets it back, or an even lower one
    // that an earlier force-deleted pod released meanwhile — never a fresh, higher address.
    const last = (p: V1Pod) => Number(p.status?.podIP?.split(".")[3]);
    expect(last(second)).toBeLessThanOrEqual(last(first));
    await core.deleteNamespacedPod({ name: "ip-2", namespace: NS, gracePeriodSeconds: 0 });
    await waitGone("ip-2");
  });
});

describe("devcluster kubelet: container exit", () => {
  it("a container that exits 0 makes the pod Succeeded", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("exits-0", { command: ["sh", "-c", "exit 0"], probe: false }),
    });
    const pod = await waitFor("exits-0 Succeeded", async () => {
      const p = await readPod("exits-0");
      return p.status?.phase === "Succeeded" ? p : undefined;
    });
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated?.reason).toBe("Completed");
    await core.deleteNamespacedPod({ name: "exits-0", namespace: NS });
    await waitGone("exits-0");
  });

  it("a container that exits 3 makes the pod Failed with exitCode 3", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("exits-3", { command: ["sh", "-c", "echo bye; exit 3"], probe: false }),
    });
    const pod = await waitFor("exits-3 Failed", async () => {
      const p = await readPod("exits-3");
      return p.status?.phase === "Failed" ? p : undefined;
    });
    const t = pod.status?.containerStatuses?.[0]?.state?.terminated;
    expect(t?.exitCode).toBe(3);
    expect(t?.reason).toBe("Error");
    expect(condition(pod, "Ready")).toBe("False");
    await core.deleteNamespacedPod({ name: "exits-3", namespace: NS });
    await waitGone("exits-3");
  });

  it("a pod writing past its emptyDir sizeLimit is evicted as a real kubelet does: the write succeeds, then Failed/Evicted with the eviction manager's message", async () => {
    // 72 MiB into the 64Mi /workspace: a tmpfs sized to the limit would refuse the bytes past 64 MiB
    // (ENOSPC) and nothing would be evicted; a real node takes them and then evicts the pod.
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("over-limit", {
        command: ["sh", "-c", "head -c 72M /dev/zero > /workspace/big || exit 9; exec sleep 3600"],
        probe: false,
        restartPolicy: "Always",
      }),
    });
    const pod = await waitFor("over-limit Failed", async () => {
      const p = await readPod("over-limit");
      return p.status?.phase === "Failed" ? p : undefined;
    });
    const message = 'Usage of EmptyDir volume "workspace" exceeds the limit "64Mi". ';
    expect(pod.status).toMatchObject({ phase: "Failed", reason: "Evicted", message });
    expect(pod.status?.conditions?.find((c) => c.type === "DisruptionTarget")).toMatchObject({
      status: "True",
      reason: "TerminationByKubelet",
      message,
    });
    expect(condition(pod, "Ready")).toBe("False");
    // Killed (grace period 0), not restarted although restartPolicy is Always.
    const c = pod.status?.containerStatuses?.[0];
    expect(c?.state?.terminated?.exitCode).toBe(137);
    expect(c?.restartCount).toBe(0);
    const events = await waitFor("the Evicted event", async () => {
      const list = await core.listNamespacedEvent({
        namespace: NS,
        fieldSelector: "involvedObject.name=over-limit",
      });
      return list.items.some((e) => e.reason === "Evicted") ? list.items : undefined;
    });
    expect(events.find((e) => e.reason === "Evicted")).toMatchObject({ type: "Warning", message });
    await core.deleteNamespacedPod({ name: "over-limit", namespace: NS });
    await waitGone("over-limit");
  });

  it("a command that cannot be started fails the pod with StartError", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("bad-cmd", { command: ["/no/such/binary"], probe: false }),
    });
    const pod = await waitFor("bad-cmd Failed", async () => {
      const p = await readPod("bad-cmd");
      return p.status?.phase === "Failed" ? p : undefined;
    });
    const t = pod.status?.containerStatuses?.[0]?.state?.terminated;
    expect(t?.reason).toBe("StartError");
    expect(t?.exitCode).toBe(128);
    expect(t?.message).toContain("/no/such/binary");
    await core.deleteNamespacedPod({ name: "bad-cmd", namespace: NS });
    await waitGone("bad-cmd");
  });

  it("an unknown image leaves the pod Pending with ErrImagePull and an honest message", async () => {
    const body = healthPod("no-image");
    body.spec!.containers[0]!.image = "example.com/not-in-the-map:1.0";
    await core.createNamespacedPod({ namespace: NS, body });
    const pod = await waitFor("no-image ErrImagePull", async () => {
      const p = await readPod("no-image");
      return p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImagePull" ? p : undefined;
    });
    expect(pod.status?.phase).toBe("Pending");
    expect(pod.status?.containerStatuses?.[0]?.state?.waiting?.message).toContain(
      "example.com/not-in-the-map",
    );
    await core.deleteNamespacedPod({ name: "no-image", namespace: NS });
    await waitGone("no-image");
  });

  it("a missing secret waits with CreateContainerConfigError", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("no-secret", {
        env: [{ name: "T", valueFrom: { secretKeyRef: { name: "absent-secret", key: "token" } } }],
      }),
    });
    const pod = await waitFor("no-secret config error", async () => {
      const p = await readPod("no-secret");
      return p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerConfigError"
        ? p
        : undefined;
    });
    expect(pod.status?.containerStatuses?.[0]?.state?.waiting?.message).toContain(
      'secret "absent-secret" not found',
    );
    expect(pod.status?.phase).toBe("Pending");
    await core.deleteNamespacedPod({ name: "no-secret", namespace: NS });
    await waitGone("no-secret");
  });
});

describe("devcluster kubelet: deletion", () => {
  it("graceful delete stops the sandbox, removes its state dir, then removes the pod", async () => {
    const marker = `marker-${randomUUID()}`;
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("del-graceful", { command: ["node", "/app/server.mjs", marker] }),
    });
    const pod = await waitReady("del-graceful");
    const uid = pod.metadata?.uid ?? "";
    expect((await hostProcessesWith(marker)).length).toBeGreaterThan(0);
    expect((await stateDirsFor(uid)).length).toBe(1);

    const deleted = await core.deleteNamespacedPod({ name: "del-graceful", namespace: NS });
    // Real semantics: the first DELETE only marks the pod; the kubelet finishes the job.
    expect(deleted.metadata?.deletionTimestamp).toBeDefined();
    await waitGone("del-graceful");
    expect(await hostProcessesWith(marker)).toEqual([]);
    expect(await stateDirsFor(uid)).toEqual([]);
    // Its address is no longer served.
    await expect(httpGetJson(`http://${pod.status?.podIP}:8080/env`)).rejects.toThrow();
  });

  it("a pod that ignores SIGTERM is killed after its (capped) grace period", async () => {
    const marker = `marker-${randomUUID()}`;
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("del-stubborn", {
        command: ["sh", "-c", `trap '' TERM; node /app/server.mjs ${marker} & wait; sleep 600`],
        grace: 2,
      }),
    });
    await waitReady("del-stubborn");
    const t0 = Date.now();
    await core.deleteNamespacedPod({ name: "del-stubborn", namespace: NS });
    await waitGone("del-stubborn");
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(await hostProcessesWith(marker)).toEqual([]);
  });

  it("a force-deleted pod (gracePeriodSeconds=0) is killed too", async () => {
    const marker = `marker-${randomUUID()}`;
    await core.createNamespacedPod({
      namespace: NS,
      body: healthPod("del-force", { command: ["node", "/app/server.mjs", marker] }),
    });
    const pod = await waitReady("del-force");
    await core.deleteNamespacedPod({ name: "del-force", namespace: NS, gracePeriodSeconds: 0 });
    await waitGone("del-force");
    await waitFor("sandbox killed", async () =>
      (await hostProcessesWith(marker)).length === 0 ? true : undefined,
    );
    await waitFor("state dir removed", async () =>
      (await stateDirsFor(pod.metadata?.uid ?? "")).length === 0 ? true : undefined,
    );
  });
});
