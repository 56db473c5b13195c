// kubectl sends its bearer token only over TLS: it works against devcluster's HTTPS API server
// with the kubeconfig devcluster writes (the cluster CA in it, verification on) and nothing else.
import { execFile } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";
import { waitFor } from "../support/wait-for.ts";

const run = promisify(execFile);

let cluster: TestCluster;
let imageDir: string;

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  cluster = await startTestCluster({
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    allocatable: { cpu: "100m" },
  });
});

afterAll(async () => {
  await cluster?.close();
  if (imageDir) await rm(imageDir, { recursive: true, force: true });
});

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run("kubectl", args, {
    env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, HOME: cluster.dir },
    timeout: 30_000,
  });
  return stdout;
}

describe("kubectl against devcluster", () => {
  it("reads over HTTPS with the shipped kubeconfig", async () => {
    expect(await kubectl("get", "namespaces", "-o", "name")).toContain("namespace/default");
    const node = JSON.parse(await kubectl("get", "nodes", "-o", "json")) as {
      items: Array<{ status: { allocatable: Record<string, string> } }>;
    };
    expect(node.items[0]?.status.allocatable.cpu).toBe("100m");
    expect(await kubectl("describe", "nodes")).toMatch(/Allocatable:\s+cpu:\s+100m/);
  });

  it("auth can-i: yes (devcluster does not enforce RBAC, and says so in the review)", async () => {
    expect((await kubectl("auth", "can-i", "create", "pods")).trim()).toBe("yes");
    const review = await cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { namespace: "default", verb: "delete", resource: "pods" } },
    });
    expect(review.status).toBe(201);
    const body = JSON.parse(review.text) as { status: { allowed: boolean; reason: string }; spec: unknown };
    expect(body.status.allowed).toBe(true);
    expect(body.status.reason).toMatch(/no RBAC/);
    expect(body.spec).toEqual({
      resourceAttributes: { namespace: "default", verb: "delete", resource: "pods" },
    });
    const bad = await cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      kind: "SelfSubjectAccessReview",
      spec: {},
    });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text)).toMatchObject({ kind: "Status", reason: "BadRequest" });
  });

  it("applies a manifest twice: created, then unchanged", async () => {
    const file = join(cluster.dir, "ns.yaml");
    await writeFile(file, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubectl-apply\n");
    // --validate=false: devcluster serves no OpenAPI document yet (see devcluster/README.md).
    expect(await kubectl("apply", "--validate=false", "-f", file)).toContain(
      "namespace/kubectl-apply created",
    );
    expect(await kubectl("apply", "--validate=false", "-f", file)).toContain(
      "namespace/kubectl-apply unchanged",
    );
  });

  it("shows why a pod is Pending in its events", async () => {
    const pod = healthPod("too-big", { probe: false });
    const main = pod.spec?.containers[0];
    if (main) main.resources = { requests: { cpu: "200m" } };
    const file = join(cluster.dir, "pod.json");
    await writeFile(file, JSON.stringify(pod));
    await kubectl("create", "--validate=false", "-f", file);
    const events = await waitFor("FailedScheduling in kubectl get events", async () => {
      const out = await kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=too-big",
        "-o",
        "json",
      );
      const list = JSON.parse(out) as { items: Array<{ reason: string; message: string }> };
      return list.items.find((e) => e.reason === "FailedScheduling");
    });
    expect(events.message).toMatch(/^0\/1 nodes are available: 1 Insufficient cpu\./);
    const phase = await kubectl("get", "pod", "too-big", "-o", "jsonpath={.status.phase}");
    expect(phase).toBe("Pending");
  });
});

describe("kubectl logs against devcluster", () => {
  it("logs shows the container's output, stdout and stderr (pods/log through the kubelet)", async () => {
    const file = join(cluster.dir, "talks-pod.json");
    const pod = healthPod("talks", {
      probe: false,
      command: ["sh", "-c", "echo hello from the pod; echo and from stderr >&2; exec sleep 600"],
    });
    await writeFile(file, JSON.stringify(pod));
    await kubectl("create", "--validate=false", "-f", file);
    const out = await waitFor("both lines in kubectl logs", async () => {
      const text = await kubectl("logs", "talks");
      return text.includes("hello from the pod") && text.includes("and from stderr") ? text : undefined;
    });
    // Two pipes: the order between stdout and stderr is not defined, as on a real node.
    expect(
      out
        .split("\n")
        .filter((l) => l !== "")
        .sort(),
    ).toEqual(["and from stderr", "hello from the pod"]);
    // Through the API as client-node calls it, too; a pod that is not there is a 404.
    const direct = await cluster.request("GET", "/api/v1/namespaces/default/pods/talks/log");
    expect(direct.status).toBe(200);
    expect(direct.headers["content-type"]).toBe("text/plain");
    expect((await cluster.request("GET", "/api/v1/namespaces/default/pods/nobody/log")).status).toBe(404);
  });
});

describe("kubectl exec against devcluster", () => {
  it("exec -i passes stdin through and returns the output; the pod's events show the scheduler and the kubelet", async () => {
    const file = join(cluster.dir, "exec-pod.json");
    await writeFile(file, JSON.stringify(healthPod("exec-me", { probe: false })));
    await kubectl("create", "--validate=false", "-f", file);
    await waitFor("exec-me Running", async () => {
      const phase = await kubectl("get", "pod", "exec-me", "-o", "jsonpath={.status.phase}");
      return phase === "Running";
    });
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
      const child = execFile(
        "kubectl",
        ["exec", "-i", "exec-me", "--", "sh", "-c", "tr a-z A-Z"],
        { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, HOME: cluster.dir }, timeout: 30_000 },
        (err, out, errOut) =>
          err ? reject(new Error(`${err.message}: ${errOut}`)) : resolve({ stdout: out }),
      );
      child.stdin?.end("hello from stdin\n");
    });
    expect(stdout).toBe("HELLO FROM STDIN\n");
    // What the scheduler and the kubelet did, as `kubectl describe` and `get events` show it.
    const reasons = async () => {
      const out = await kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=exec-me",
        "-o",
        "json",
      );
      const list = JSON.parse(out) as { items: Array<{ reason: string; source: { component: string } }> };
      return list.items.map((e) => `${e.source.component}:${e.reason}`);
    };
    expect(
      await waitFor("Scheduled and Started", async () => {
        const r = await reasons();
        return r.includes("default-scheduler:Scheduled") && r.includes("kubelet:Started") ? r : undefined;
      }),
    ).toBeDefined();
    await kubectl("delete", "pod", "exec-me", "--wait=false");
    await waitFor("Killing", async () => (await reasons()).includes("kubelet:Killing"));
    expect(await kubectl("describe", "pod", "talks")).toMatch(
      /Started\s+\S+\s+kubelet\s+Started container main/,
    );
  });
});
