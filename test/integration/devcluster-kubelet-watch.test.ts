import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "../../devcluster/apiserver/index.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { type Kubelet, startKubelet } from "../../devcluster/kubelet/index.ts";
import { type Scheduler, startScheduler } from "../../devcluster/scheduler/scheduler.ts";
import { testKubeletClient, testKubeletTls } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";

// The kubelet keeps working across an API server outage: its informer fails with a network
// error (which client-node does not retry by itself), and the kubelet restarts it with backoff.
const ADMIN = "admin-token";
const NODE = "node-token";
let dir: string;
let imageDir: string;
let api: ApiServer;
let kubelet: Kubelet;
let port: number;

let scheduler: Scheduler;
const apiOpts = async () => ({
  tokens: { [ADMIN]: "admin", [NODE]: "system:node:watch-node" },
  kubeletClient: await testKubeletClient(),
  port,
  stateFile: join(dir, "api-state.json"),
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "devcluster-kwatch-"));
  imageDir = await writeHealthServerImage();
  port = 0;
  api = await startApiServer(await apiOpts());
  port = Number(new URL(api.url).port);
  const core = admin();
  await core.createNamespace({ body: { metadata: { name: "default" } } });
  kubelet = await startKubelet({
    kubeConfig: makeKubeConfig({ server: api.url, token: NODE, user: "system:node:watch-node" }),
    nodeName: "watch-node",
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    stateDir: join(dir, "kubelet"),
    tls: await testKubeletTls(),
  });
  scheduler = await startScheduler({ kubeConfig: makeKubeConfig({ server: api.url, token: ADMIN }) });
});

afterAll(async () => {
  await scheduler?.close();
  await kubelet?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

function admin(): CoreV1Api {
  return makeKubeConfig({ server: `http://127.0.0.1:${port}`, token: ADMIN }).makeApiClient(CoreV1Api);
}

async function waitReady(name: string, timeoutMs = 30_000): Promise<V1Pod> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const p = await admin()
      .readNamespacedPod({ name, namespace: "default" })
      .catch(() => undefined);
    if (p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) return p;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${name} not Ready`);
}

describe("kubelet pod watch", () => {
  it("picks up new pods after the API server was down and came back", async () => {
    await admin().createNamespacedPod({ namespace: "default", body: healthPod("before") });
    await waitReady("before");

    await api.close();
    await new Promise((r) => setTimeout(r, 1000));
    api = await startApiServer(await apiOpts());

    await admin().createNamespacedPod({ namespace: "default", body: healthPod("after") });
    const after = await waitReady("after");
    expect(after.spec?.nodeName).toBe("watch-node");
    const before = await admin().readNamespacedPod({ name: "before", namespace: "default" });
    expect(after.status?.podIP).not.toBe(before.status?.podIP);

    // Deletion still flows through the restarted watch.
    await admin().deleteNamespacedPod({ name: "after", namespace: "default" });
    const deadline = Date.now() + 15_000;
    let gone = false;
    while (!gone && Date.now() < deadline) {
      gone = await admin()
        .readNamespacedPod({ name: "after", namespace: "default" })
        .then(
          () => false,
          (e: { code?: number }) => e.code === 404,
        );
      if (!gone) await new Promise((r) => setTimeout(r, 150));
    }
    expect(gone).toBe(true);
  }, 60_000);
});
