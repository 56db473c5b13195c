// The node reports allocatable CPU and memory and the scheduler fits requests into it: a pod
// beyond it stays Pending with the condition and FailedScheduling event a real kube-scheduler
// writes, and is bound as soon as room frees up.
import { rm } from "node:fs/promises";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";
import { waitFor } from "../support/wait-for.ts";

let cluster: TestCluster;
let imageDir: string;
const NS = "default";

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  cluster = await startTestCluster({
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    allocatable: { cpu: "250m", memory: "1Gi" },
  });
});

afterAll(async () => {
  await cluster?.close();
  if (imageDir) await rm(imageDir, { recursive: true, force: true });
});

const core = () => cluster.kubeConfig().makeApiClient(CoreV1Api);

function requesting(name: string, cpu: string, memory = "16Mi"): V1Pod {
  const pod = healthPod(name, { probe: false });
  const main = pod.spec?.containers[0];
  if (main) main.resources = { requests: { cpu, memory }, limits: { cpu, memory: "64Mi" } };
  return pod;
}

// The doubled period at the end is kube-scheduler 1.28's own.
const NO_ROOM =
  "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..";

describe("scheduling by requests", () => {
  it("the node reports capacity and the configured allocatable", async () => {
    const nodes = (await core().listNode()).items;
    expect(nodes).toHaveLength(1);
    const status = nodes[0]?.status;
    expect(status?.allocatable).toMatchObject({ cpu: "250m", memory: "1Gi", pods: "110" });
    expect(Number(status?.capacity?.cpu)).toBeGreaterThanOrEqual(1);
    expect(status?.capacity?.memory).toMatch(/^\d+Ki$/);
  });

  it("a pod that does not fit stays Pending as Unschedulable with an event, and is bound once room frees", async () => {
    for (const n of ["fit-a", "fit-b"])
      await core().createNamespacedPod({ namespace: NS, body: requesting(n, "100m") });
    for (const n of ["fit-a", "fit-b"])
      await waitFor(
        `${n} bound`,
        async () => (await core().readNamespacedPod({ name: n, namespace: NS })).spec?.nodeName,
      );
    await core().createNamespacedPod({ namespace: NS, body: requesting("fit-c", "100m") });

    const unschedulable = await waitFor("fit-c Unschedulable", async () => {
      const p = await core().readNamespacedPod({ name: "fit-c", namespace: NS });
      const c = p.status?.conditions?.find((x) => x.type === "PodScheduled");
      return c?.status === "False" ? { pod: p, condition: c } : undefined;
    });
    expect(unschedulable.pod.spec?.nodeName ?? "").toBe("");
    expect(unschedulable.pod.status?.phase).toBe("Pending");
    expect(unschedulable.condition.reason).toBe("Unschedulable");
    expect(unschedulable.condition.message).toBe(NO_ROOM);

    const failed = await waitFor("FailedScheduling event", async () => {
      const list = await core().listNamespacedEvent({
        namespace: NS,
        fieldSelector: "involvedObject.name=fit-c,reason=FailedScheduling",
      });
      return list.items[0];
    });
    expect(failed.type).toBe("Warning");
    expect(failed.message).toBe(NO_ROOM);
    expect(failed.source?.component).toBe("default-scheduler");
    expect(failed.involvedObject.kind).toBe("Pod");

    // A pod that asks for no CPU still fits (only requests count, as on a real node).
    await core().createNamespacedPod({ namespace: NS, body: requesting("fit-free", "0") });
    await waitFor(
      "fit-free bound",
      async () => (await core().readNamespacedPod({ name: "fit-free", namespace: NS })).spec?.nodeName,
    );

    await core().deleteNamespacedPod({ name: "fit-a", namespace: NS, gracePeriodSeconds: 0 });
    const bound = await waitFor("fit-c bound after fit-a is gone", async () => {
      const p = await core().readNamespacedPod({ name: "fit-c", namespace: NS });
      return p.spec?.nodeName ? p : undefined;
    });
    const cond = bound.status?.conditions?.find((x) => x.type === "PodScheduled");
    expect(cond?.status).toBe("True");
    expect(cond?.reason).toBeUndefined();
    const scheduled = await core().listNamespacedEvent({
      namespace: NS,
      fieldSelector: "involvedObject.name=fit-c,reason=Scheduled",
    });
    expect(scheduled.items[0]?.message).toBe(`Successfully assigned ${NS}/fit-c to ${bound.spec?.nodeName}`);
  });
});
