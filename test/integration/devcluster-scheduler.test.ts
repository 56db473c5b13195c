// Scheduling is the scheduler's job: the kubelet (a node identity) never creates pods/binding —
// a Node-authorized kubelet on a real cluster may not. The scheduler binds through the public API.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, type AuditEntry, startApiServer } from "../../devcluster/apiserver/index.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { type Kubelet, startKubelet } from "../../devcluster/kubelet/index.ts";
import { startScheduler } from "../../devcluster/scheduler/scheduler.ts";
import { testKubeletClient, testKubeletTls } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";
import { waitFor } from "../support/wait-for.ts";

const ADMIN = "sched-admin";
const NODE = "sched-node-token";
const SCHED = "sched-token";
let dir: string;
let imageDir: string;
let api: ApiServer;
let kubelet: Kubelet;
const audit: AuditEntry[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "devcluster-sched-"));
  imageDir = await writeHealthServerImage();
  api = await startApiServer({
    tokens: { [ADMIN]: "admin", [NODE]: "system:node:sched-node", [SCHED]: "system:kube-scheduler" },
    kubeletClient: await testKubeletClient(),
    audit: (e) => audit.push(e),
  });
  await core().createNamespace({ body: { metadata: { name: "default" } } });
  kubelet = await startKubelet({
    kubeConfig: makeKubeConfig({ server: api.url, token: NODE, user: "system:node:sched-node" }),
    nodeName: "sched-node",
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    stateDir: join(dir, "kubelet"),
    tls: await testKubeletTls(),
  });
});

afterAll(async () => {
  await kubelet?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

function core(): CoreV1Api {
  return makeKubeConfig({ server: api.url, token: ADMIN }).makeApiClient(CoreV1Api);
}

describe("scheduling", () => {
  it("without a scheduler a pod stays unbound; the scheduler binds it and the kubelet runs it", async () => {
    await core().createNamespacedPod({ namespace: "default", body: healthPod("waits") });
    // Longer than the kubelet's 5 s resync would need to notice it, were it binding pods itself.
    await new Promise((r) => setTimeout(r, 6000));
    const before = await core().readNamespacedPod({ name: "waits", namespace: "default" });
    expect(before.spec?.nodeName ?? "").toBe("");

    const scheduler = await startScheduler({
      kubeConfig: makeKubeConfig({ server: api.url, token: SCHED, user: "system:kube-scheduler" }),
    });
    try {
      const running = await waitFor("waits Running", async () => {
        const p = await core().readNamespacedPod({ name: "waits", namespace: "default" });
        return p.status?.phase === "Running" ? p : undefined;
      });
      expect(running.spec?.nodeName).toBe("sched-node");
    } finally {
      await scheduler.close();
    }
    const bindings = audit.filter((e) => e.subresource === "binding");
    expect(bindings.length).toBeGreaterThan(0);
    expect(new Set(bindings.map((e) => e.user))).toEqual(new Set(["system:kube-scheduler"]));
    // The node identity only reads and writes what a Node-authorized kubelet may (its node, pod
    // status, and Events, which the system:node role grants).
    const nodeWrites = audit.filter(
      (e) => e.user === "system:node:sched-node" && ["create", "update", "patch"].includes(e.verb),
    );
    for (const e of nodeWrites) {
      expect(
        e.resource === "nodes" ||
          (e.resource === "pods" && e.subresource === "status") ||
          (e.resource === "events" && e.verb === "create"),
      ).toBe(true);
    }
  });
});
