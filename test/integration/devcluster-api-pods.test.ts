import {
  ApiException,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../support/devcluster.ts";

const NS = "pods-test";
const PODS = `/api/v1/namespaces/${NS}/pods`;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

let s: TestApiServer;
let core: CoreV1Api;

beforeAll(async () => {
  s = await startTestApiServer({ namespaces: [NS] });
  core = s.kubeConfig().makeApiClient(CoreV1Api);
});
afterAll(async () => {
  await s?.close();
});

function pod(name: string, extra: Partial<V1Pod["spec"]> = {}, labels: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      containers: [{ name: "main", image: "pi-sandbox-runtime/sandbox:dev", command: ["sleep", "1"] }],
      ...extra,
    },
  };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    return { code: e.code, body: JSON.parse(String(e.body)) as Record<string, unknown> };
  }
  throw new Error("expected the call to fail");
}

async function bind(name: string, node = "node-a") {
  return s.raw("POST", `${PODS}/${name}/binding`, {
    apiVersion: "v1",
    kind: "Binding",
    metadata: { name },
    target: { apiVersion: "v1", kind: "Node", name: node },
  });
}

describe("pods", () => {
  it("create with generateName: generated name, defaults, Pending status, generation 1", async () => {
    const p = await core.createNamespacedPod({
      namespace: NS,
      body: { ...pod(""), metadata: { generateName: "sandbox-" }, status: { phase: "Running" } },
    });
    expect(p.metadata?.name).toMatch(/^sandbox-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(p.metadata?.generation).toBe(1);
    expect(p.spec?.restartPolicy).toBe("Always");
    expect(p.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(p.spec?.containers[0]?.terminationMessagePath).toBe("/dev/termination-log");
    expect(p.spec?.containers[0]?.imagePullPolicy).toBe("IfNotPresent");
    expect(p.status?.phase).toBe("Pending");
    expect(p.status?.qosClass).toBe("BestEffort");
  });

  it("status sent to the main resource is silently ignored (200, unchanged)", async () => {
    const p = await core.createNamespacedPod({ namespace: NS, body: pod("ignore-status") });
    const u = await core.replaceNamespacedPod({
      name: "ignore-status",
      namespace: NS,
      body: { ...p, status: { phase: "Running", podIP: "127.0.1.9" } },
    });
    expect(u.status?.phase).toBe("Pending");
    expect(u.status?.podIP).toBeUndefined();
    expect(u.metadata?.resourceVersion).toBe(p.metadata?.resourceVersion);
    const patched = await core.patchNamespacedPod(
      { name: "ignore-status", namespace: NS, body: { status: { phase: "Failed" } } },
      mergePatch,
    );
    expect(patched.status?.phase).toBe("Pending");
  });

  it("status is written through the status subresource (merge patch and PUT)", async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("st") });
    const p = await core.patchNamespacedPodStatus(
      { name: "st", namespace: NS, body: { status: { phase: "Running", podIP: "127.0.1.7" } } },
      mergePatch,
    );
    expect(p.status?.phase).toBe("Running");
    expect(p.status?.podIP).toBe("127.0.1.7");
    expect(p.status?.podIPs).toEqual([{ ip: "127.0.1.7" }]);
    // Spec changes through /status are dropped.
    const u = await core.replaceNamespacedPodStatus({
      name: "st",
      namespace: NS,
      body: {
        ...p,
        spec: { ...p.spec, activeDeadlineSeconds: 5, containers: p.spec?.containers ?? [] },
        status: { ...p.status, phase: "Succeeded" },
      },
    });
    expect(u.status?.phase).toBe("Succeeded");
    expect(u.spec?.activeDeadlineSeconds).toBeUndefined();
    const got = await core.readNamespacedPodStatus({ name: "st", namespace: NS });
    expect(got.status?.phase).toBe("Succeeded");
  });

  it("an invalid podIP → 422", async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("badip") });
    const err = await apiError(
      core.patchNamespacedPodStatus(
        { name: "badip", namespace: NS, body: { status: { podIP: "not-an-ip" } } },
        mergePatch,
      ),
    );
    expect(err.code).toBe(422);
    expect(err.body.reason).toBe("Invalid");
    expect(err.body.message).toContain('status.podIPs[0]: Invalid value: "not-an-ip"');
  });

  it("changing an immutable spec field → 422; image and metadata may change (generation bumps)", async () => {
    const p = await core.createNamespacedPod({ namespace: NS, body: pod("immut") });
    const err = await apiError(
      core.patchNamespacedPod(
        { name: "immut", namespace: NS, body: { spec: { restartPolicy: "Never" } } },
        mergePatch,
      ),
    );
    expect(err.code).toBe(422);
    expect(err.body.message).toContain("spec: Forbidden: pod updates may not change fields other than");
    const err2 = await apiError(
      core.patchNamespacedPod({
        name: "immut",
        namespace: NS,
        body: [{ op: "replace", path: "/spec/containers/0/command", value: ["true"] }],
      }),
    );
    expect(err2.code).toBe(422);
    const img = await core.patchNamespacedPod({
      name: "immut",
      namespace: NS,
      body: [{ op: "replace", path: "/spec/containers/0/image", value: "other:2" }],
    });
    expect(img.spec?.containers[0]?.image).toBe("other:2");
    expect(img.metadata?.generation).toBe(2);
    const lab = await core.patchNamespacedPod(
      { name: "immut", namespace: NS, body: { metadata: { labels: { a: "b" }, annotations: { x: "y" } } } },
      mergePatch,
    );
    expect(lab.metadata?.labels).toEqual({ a: "b" });
    expect(lab.metadata?.generation).toBe(2);
    expect(Number(lab.metadata?.resourceVersion)).toBeGreaterThan(Number(p.metadata?.resourceVersion));
  });

  it("a pod without containers, or a bad container name → 422", async () => {
    const r = await s.raw("POST", PODS, { metadata: { name: "empty" }, spec: { containers: [] } });
    expect(r.status).toBe(422);
    expect(r.json.message).toContain("spec.containers: Required value");
    const r2 = await s.raw("POST", PODS, {
      metadata: { name: "badc" },
      spec: { containers: [{ name: "Bad_Name", image: "x" }] },
    });
    expect(r2.status).toBe(422);
    expect(r2.json.details.causes[0].field).toBe("spec.containers[0].name");
  });

  it("binding assigns the node once; a second binding → 409; a missing pod → 404", async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("bindme") });
    const b = await bind("bindme");
    expect(b.status).toBe(201);
    expect(b.json).toMatchObject({ kind: "Status", status: "Success", code: 201 });
    const p = await core.readNamespacedPod({ name: "bindme", namespace: NS });
    expect(p.spec?.nodeName).toBe("node-a");
    expect(p.status?.conditions?.find((c) => c.type === "PodScheduled")?.status).toBe("True");
    const again = await bind("bindme", "node-b");
    expect(again.status).toBe(409);
    expect(again.json.reason).toBe("Conflict");
    expect(again.json.message).toBe(
      'Operation cannot be fulfilled on pods/binding "bindme": pod bindme is already assigned to node "node-a"',
    );
    expect((await bind("ghost")).status).toBe(404);
  });

  it("graceful delete: a bound pod gets deletionTimestamp, then gracePeriodSeconds=0 removes it", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: pod("grace", { terminationGracePeriodSeconds: 7 }),
    });
    await bind("grace");
    const d = await core.deleteNamespacedPod({ name: "grace", namespace: NS });
    expect(d.metadata?.deletionTimestamp).toBeDefined();
    expect(d.metadata?.deletionGracePeriodSeconds).toBe(7);
    const still = await core.readNamespacedPod({ name: "grace", namespace: NS });
    expect(still.metadata?.deletionGracePeriodSeconds).toBe(7);
    // A longer grace period does not extend it; a shorter one shortens it.
    const longer = await s.raw("DELETE", `${PODS}/grace?gracePeriodSeconds=60`);
    expect(longer.json.metadata.deletionGracePeriodSeconds).toBe(7);
    const shorter = await s.raw("DELETE", `${PODS}/grace`, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      gracePeriodSeconds: 3,
    });
    expect(shorter.json.metadata.deletionGracePeriodSeconds).toBe(3);
    const gone = await s.raw("DELETE", `${PODS}/grace?gracePeriodSeconds=0`);
    expect(gone.status).toBe(200);
    expect(gone.json.kind).toBe("Pod");
    expect((await s.raw("GET", `${PODS}/grace`)).status).toBe(404);
  });

  it("an unbound pod is deleted at once", async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("unbound") });
    await core.deleteNamespacedPod({ name: "unbound", namespace: NS });
    const err = await apiError(core.readNamespacedPod({ name: "unbound", namespace: NS }));
    expect(err.code).toBe(404);
    expect(err.body.message).toBe('pods "unbound" not found');
    expect(err.body.details).toEqual({ name: "unbound", kind: "pods" });
  });

  it("finalizers hold a deleted object until an update removes them", async () => {
    await core.createNamespacedPod({
      namespace: NS,
      body: { ...pod("fin"), metadata: { name: "fin", finalizers: ["x/y"] } },
    });
    const d = await s.raw("DELETE", `${PODS}/fin`);
    expect(d.json.metadata.deletionTimestamp).toBeDefined();
    expect((await s.raw("GET", `${PODS}/fin`)).status).toBe(200);
    await core.patchNamespacedPod(
      { name: "fin", namespace: NS, body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    expect((await s.raw("GET", `${PODS}/fin`)).status).toBe(404);
  });

  it('creating in a missing namespace → 404 namespaces "x" not found', async () => {
    const err = await apiError(core.createNamespacedPod({ namespace: "no-such-ns", body: pod("x") }));
    expect(err.code).toBe(404);
    expect(err.body.message).toBe('namespaces "no-such-ns" not found');
  });

  it("strategic merge patch merges status.conditions by type and containerStatuses by name", async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("smp") });
    const first = await s.raw(
      "PATCH",
      `${PODS}/smp/status`,
      {
        status: {
          conditions: [
            { type: "Ready", status: "False" },
            { type: "Initialized", status: "True" },
          ],
          containerStatuses: [
            { name: "main", ready: false, restartCount: 0, image: "i", imageID: "", state: {} },
          ],
        },
      },
      "application/strategic-merge-patch+json",
    );
    expect(first.status).toBe(200);
    const r = await s.raw(
      "PATCH",
      `${PODS}/smp/status`,
      {
        status: {
          "$setElementOrder/conditions": [{ type: "Ready" }, { type: "Initialized" }],
          conditions: [{ type: "Ready", status: "True", lastTransitionTime: "2026-01-02T03:04:05.999Z" }],
          containerStatuses: [{ name: "main", ready: true }],
        },
      },
      "application/strategic-merge-patch+json",
    );
    expect(r.status).toBe(200);
    const conds = r.json.status.conditions as Array<{
      type: string;
      status: string;
      lastTransitionTime?: string;
    }>;
    expect(conds.map((c) => `${c.type}=${c.status}`).sort()).toEqual(["Initialized=True", "Ready=True"]);
    // metav1.Time is stored with whole seconds.
    expect(conds.find((c) => c.type === "Ready")?.lastTransitionTime).toBe("2026-01-02T03:04:05Z");
    expect(r.json.status.containerStatuses).toEqual([
      { name: "main", ready: true, restartCount: 0, image: "i", imageID: "", state: {} },
    ]);
  });
});

describe("pod selectors", () => {
  beforeAll(async () => {
    await core.createNamespacedPod({ namespace: NS, body: pod("sel-1", {}, { tier: "a", pool: "x" }) });
    await core.createNamespacedPod({ namespace: NS, body: pod("sel-2", {}, { tier: "b", pool: "x" }) });
    await core.createNamespacedPod({ namespace: NS, body: pod("sel-3", {}, { tier: "c" }) });
    await bind("sel-2", "node-z");
    await core.patchNamespacedPodStatus(
      { name: "sel-3", namespace: NS, body: { status: { phase: "Running" } } },
      mergePatch,
    );
  });
  const names = async (q: { labelSelector?: string; fieldSelector?: string }) =>
    (await core.listNamespacedPod({ namespace: NS, ...q })).items
      .map((p) => p.metadata?.name ?? "")
      .filter((n) => n.startsWith("sel-"))
      .sort();

  it.each([
    ["tier=a", ["sel-1"]],
    ["tier==b", ["sel-2"]],
    ["tier!=a", ["sel-2", "sel-3"]],
    ["tier in (a,c)", ["sel-1", "sel-3"]],
    ["tier notin (a,c)", ["sel-2"]],
    ["pool", ["sel-1", "sel-2"]],
    ["!pool,tier", ["sel-3"]],
    ["pool=x,tier!=b", ["sel-1"]],
  ])("label selector %s", async (sel, want) => {
    expect(await names({ labelSelector: sel })).toEqual(want);
  });

  it.each([
    ["spec.nodeName=node-z", ["sel-2"]],
    ["status.phase=Running", ["sel-3"]],
    ["metadata.name=sel-1", ["sel-1"]],
    ["metadata.name!=sel-1,metadata.namespace=pods-test,status.phase=Pending", ["sel-2"]],
  ])("field selector %s", async (sel, want) => {
    expect(await names({ fieldSelector: sel })).toEqual(want);
  });

  it("an unsupported field label or a malformed label selector → 400", async () => {
    const f = await s.raw("GET", `${PODS}?fieldSelector=spec.bogus%3Dx`);
    expect(f.status).toBe(400);
    expect(f.json.message).toBe("field label not supported: spec.bogus");
    const l = await s.raw("GET", `${PODS}?labelSelector=${encodeURIComponent("tier in (a")}`);
    expect(l.status).toBe(400);
    expect(l.json.reason).toBe("BadRequest");
  });

  it("limit/continue pages through a list", async () => {
    const first = await core.listNamespacedPod({ namespace: NS, labelSelector: "tier", limit: 2 });
    expect(first.items).toHaveLength(2);
    expect(first.metadata?._continue).toBeTruthy();
    const rest = await core.listNamespacedPod({
      namespace: NS,
      labelSelector: "tier",
      limit: 2,
      _continue: first.metadata?._continue,
    });
    expect(rest.items.map((p) => p.metadata?.name)).toEqual(["sel-3"]);
    expect(rest.metadata?._continue).toBeFalsy();
  });
});
