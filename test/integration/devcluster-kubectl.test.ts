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

/** A column of kubectl's table output: AGE as HumanDuration prints it. */
const AGE = /^\d+(s|m|m\d+s|h|h\d+m)$/;

/** kubectl's table output split into rows of cells (cells hold no spaces in these tests). */
function lines(table: string): string[][] {
  return table
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.trim().split(/\s+/));
}

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

  it("auth can-i --list: a SelfSubjectRulesReview answered with everything (what devcluster allows)", async () => {
    const table = lines(await kubectl("auth", "can-i", "--list", "-n", "default"));
    expect(table[0]).toEqual(["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]);
    expect(table.slice(1)).toEqual([
      ["*.*", "[]", "[]", "[*]"],
      ["[*]", "[]", "[*]"],
    ]);
    const review = await cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectRulesReview",
      spec: { namespace: "pi-sandbox" },
    });
    expect(review.status).toBe(201);
    expect(JSON.parse(review.text)).toMatchObject({
      spec: { namespace: "pi-sandbox" },
      status: { incomplete: false, evaluationError: expect.stringMatching(/no RBAC/) },
    });
  });

  it("applies manifests with kubectl's default validation: created, then unchanged; unknown fields rejected", async () => {
    // No --validate=false: kubectl finds `fieldValidation` on each kind's PATCH in /openapi/v3 and
    // leaves validation to the server (Strict), as on a real cluster.
    const file = join(cluster.dir, "manifests.yaml");
    await writeFile(
      file,
      [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubectl-apply\n",
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: held\n  namespace: kubectl-apply\nspec:\n  holderIdentity: agent-1\n",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: kubectl-apply\nstringData:\n  k: v\n",
      ].join("---\n"),
    );
    const first = await kubectl("apply", "-f", file);
    expect(first).toContain("namespace/kubectl-apply created");
    expect(first).toContain("lease.coordination.k8s.io/held created");
    expect(first).toContain("secret/s created");
    const second = await kubectl("apply", "-f", file);
    expect(second).toContain("namespace/kubectl-apply unchanged");
    expect(second).toContain("lease.coordination.k8s.io/held unchanged");
    const bad = join(cluster.dir, "bad-lease.yaml");
    await writeFile(
      bad,
      "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: typo\nspec:\n  holderIdentity: x\n  holderIdentitty: y\n",
    );
    await expect(kubectl("create", "-f", bad)).rejects.toThrow(
      /strict decoding error: unknown field "spec.holderIdentitty"/,
    );
    // The same documents serve `kubectl explain`.
    expect(await kubectl("explain", "lease.spec")).toMatch(/holderIdentity\s+<string>/);
    // …and /openapi/v2 in the protobuf kubectl asks for (what kubectl before 1.27 validates with).
    expect(await kubectl("explain", "lease.spec", "--output=plaintext-openapiv2")).toMatch(
      /holderIdentity\s+<string>/,
    );
    // `kubectl get leases`: the server's Table, with the HOLDER column.
    expect(lines(await kubectl("get", "leases", "-n", "kubectl-apply"))).toEqual([
      ["NAME", "HOLDER", "AGE"],
      ["held", "agent-1", expect.stringMatching(AGE)],
    ]);
  });

  it("kubectl's typed create commands send protobuf: create namespace and create secret generic are stored as sent", async () => {
    expect(await kubectl("create", "namespace", "typed-create")).toBe("namespace/typed-create created\n");
    expect(
      await kubectl(
        "create",
        "secret",
        "generic",
        "typed",
        "-n",
        "typed-create",
        "--from-literal=token=s3cret",
        "--from-literal=empty=",
      ),
    ).toBe("secret/typed created\n");
    const secret = JSON.parse(
      await kubectl("get", "secret", "typed", "-n", "typed-create", "-o", "json"),
    ) as {
      metadata: { name: string; namespace: string };
      type: string;
      data: Record<string, string>;
    };
    expect(secret.metadata).toMatchObject({ name: "typed", namespace: "typed-create" });
    expect(secret.type).toBe("Opaque");
    expect(secret.data).toEqual({ token: Buffer.from("s3cret").toString("base64"), empty: "" });
    // Kinds devcluster cannot read as protobuf still get the real server's 415 for that body.
    const lease = await cluster.request(
      "POST",
      "/apis/coordination.k8s.io/v1/namespaces/typed-create/leases",
      "k8s\0",
      "application/vnd.kubernetes.protobuf",
    );
    expect(lease.status).toBe(415);
  });

  it("apply --server-side: kubectl's field manager owns what it applied; another manager conflicts until it forces", async () => {
    const lease = (labels: string, spec: string) =>
      `apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: ssa\n  labels: {${labels}}\nspec: {${spec}}\n`;
    const mine = join(cluster.dir, "ssa.yaml");
    await writeFile(mine, lease('app: "x"', "holderIdentity: agent-1, leaseDurationSeconds: 30"));
    expect(await kubectl("apply", "--server-side", "-f", mine)).toContain(
      "lease.coordination.k8s.io/ssa serverside-applied",
    );
    const rv = await kubectl("get", "lease", "ssa", "-o", "jsonpath={.metadata.resourceVersion}");
    await kubectl("apply", "--server-side", "-f", mine);
    // Applying the same configuration again writes nothing.
    expect(await kubectl("get", "lease", "ssa", "-o", "jsonpath={.metadata.resourceVersion}")).toBe(rv);
    const managed = async () =>
      (
        JSON.parse(await kubectl("get", "lease", "ssa", "-o", "json", "--show-managed-fields")) as {
          metadata: { managedFields: Array<{ manager: string; operation: string; fieldsV1: unknown }> };
        }
      ).metadata.managedFields;
    expect(await managed()).toMatchObject([
      {
        manager: "kubectl",
        operation: "Apply",
        fieldsV1: {
          "f:metadata": { "f:labels": { "f:app": {} } },
          "f:spec": { "f:holderIdentity": {}, "f:leaseDurationSeconds": {} },
        },
      },
    ]);
    const theirs = join(cluster.dir, "ssa-agent.yaml");
    await writeFile(theirs, lease("", "holderIdentity: agent-2"));
    await expect(kubectl("apply", "--server-side", "--field-manager=agent", "-f", theirs)).rejects.toThrow(
      /Apply failed with 1 conflict: conflict with "kubectl": \.spec\.holderIdentity/,
    );
    await kubectl("apply", "--server-side", "--field-manager=agent", "--force-conflicts", "-f", theirs);
    expect(await kubectl("get", "lease", "ssa", "-o", "jsonpath={.spec.holderIdentity}")).toBe("agent-2");
    // kubectl stops applying leaseDurationSeconds: it goes; holderIdentity is the agent's now and stays.
    await writeFile(mine, lease('app: "x"', ""));
    await kubectl("apply", "--server-side", "-f", mine);
    const spec = JSON.parse(await kubectl("get", "lease", "ssa", "-o", "jsonpath={.spec}")) as unknown;
    expect(spec).toEqual({ holderIdentity: "agent-2" });
    expect((await managed()).map((m) => m.manager)).toEqual(["kubectl", "agent"]);
  });

  it("get -w: the watch carries Table rows too, one line per change", async () => {
    const file = join(cluster.dir, "watched.yaml");
    const lease = (holder: string) =>
      `apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: watched\nspec:\n  holderIdentity: ${holder}\n`;
    await writeFile(file, lease("first"));
    await kubectl("apply", "-f", file);
    const child = execFile("kubectl", ["get", "lease", "watched", "-w"], {
      env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, HOME: cluster.dir },
      timeout: 30_000,
    });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      await waitFor("the first row", () => out.includes("first"));
      await writeFile(file, lease("second"));
      await kubectl("apply", "-f", file);
      await waitFor("the row of the change", () => out.includes("second"));
      expect(lines(out)).toEqual([
        ["NAME", "HOLDER", "AGE"],
        ["watched", "first", expect.stringMatching(AGE)],
        ["watched", "second", expect.stringMatching(AGE)],
      ]);
    } finally {
      child.kill();
    }
  });

  it("get nodes prints STATUS, ROLES and VERSION from the server's Table", async () => {
    expect(lines(await kubectl("get", "nodes"))).toEqual([
      ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
      [expect.any(String), "Ready", "<none>", expect.stringMatching(AGE), "v1.26.0-devcluster"],
    ]);
  });

  it("shows why a pod is Pending in its events", async () => {
    const pod = healthPod("too-big", { probe: false });
    const main = pod.spec?.containers[0];
    if (main) main.resources = { requests: { cpu: "200m" } };
    const file = join(cluster.dir, "pod.json");
    await writeFile(file, JSON.stringify(pod));
    await kubectl("create", "-f", file);
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
    expect(lines(await kubectl("get", "pod", "too-big"))).toEqual([
      ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
      ["too-big", "0/1", "Pending", "0", expect.stringMatching(AGE)],
    ]);
    // --sort-by asks for whole objects in the rows (includeObject=Object).
    expect(lines(await kubectl("get", "pods", "--sort-by=.metadata.name"))).toContainEqual([
      "too-big",
      "0/1",
      "Pending",
      "0",
      expect.stringMatching(AGE),
    ]);
    const table = await kubectl("get", "events", "--field-selector", "involvedObject.name=too-big");
    expect(table.split("\n")[0]).toMatch(/^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$/);
    expect(table).toMatch(
      /\n\S+\s+Warning\s+FailedScheduling\s+pod\/too-big\s+0\/1 nodes are available: 1 Insufficient cpu\./,
    );
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
    await kubectl("create", "-f", file);
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

describe("kubectl logs -f against devcluster", () => {
  it("follows the container's output as it is written and ends when the container does; --tail=N gives the last N lines", async () => {
    const file = join(cluster.dir, "follow-pod.json");
    const pod = healthPod("follow", {
      probe: false,
      command: [
        "sh",
        "-c",
        "echo zero; echo first; until [ -e /workspace/go ]; do sleep 0.1; done; echo second; echo third",
      ],
    });
    await writeFile(file, JSON.stringify(pod));
    await kubectl("create", "-f", file);
    await waitFor("follow started", async () => (await kubectl("logs", "follow")).includes("first"));
    let out = "";
    let exited: (code: number | null) => void = () => {};
    const ended = new Promise<number | null>((r) => {
      exited = r;
    });
    const child = execFile(
      "kubectl",
      ["logs", "-f", "follow"],
      { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, HOME: cluster.dir }, timeout: 60_000 },
      (err) => exited(err ? ((err as { code?: number }).code ?? 1) : 0),
    );
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString("utf8");
    });
    // The stream is open and has what was written so far; nothing more comes until the pod goes on.
    await waitFor("the first lines streamed", () => out === "zero\nfirst\n");
    await kubectl("exec", "follow", "--", "touch", "/workspace/go");
    expect(await ended).toBe(0);
    expect(out).toBe("zero\nfirst\nsecond\nthird\n");
    expect(await kubectl("logs", "--tail=2", "follow")).toBe("second\nthird\n");
    expect(await kubectl("logs", "--tail=0", "follow")).toBe("");
  });
});

describe("kubectl exec against devcluster", () => {
  it("exec -i passes stdin through and returns the output; the pod's events show the scheduler and the kubelet", async () => {
    const file = join(cluster.dir, "exec-pod.json");
    await writeFile(file, JSON.stringify(healthPod("exec-me", { probe: false })));
    await kubectl("create", "-f", file);
    // `kubectl get pods`: READY and STATUS as the server's Table computes them from the pod status.
    const row = await waitFor("exec-me 1/1 Running", async () => {
      const [header, cells] = lines(await kubectl("get", "pod", "exec-me"));
      return cells?.[1] === "1/1" ? { header, cells } : undefined;
    });
    expect(row.header).toEqual(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    expect(row.cells).toEqual(["exec-me", "1/1", "Running", "0", expect.stringMatching(AGE)]);
    const [wideHeader, wide] = lines(await kubectl("get", "pod", "exec-me", "-o", "wide"));
    expect(wideHeader).toEqual([
      "NAME",
      "READY",
      "STATUS",
      "RESTARTS",
      "AGE",
      "IP",
      "NODE",
      "NOMINATED",
      "NODE",
      "READINESS",
      "GATES",
    ]);
    const pod = JSON.parse(await kubectl("get", "pod", "exec-me", "-o", "json")) as {
      spec: { nodeName: string };
      status: { podIP: string };
    };
    expect(wide?.slice(5)).toEqual([pod.status.podIP, pod.spec.nodeName, "<none>", "<none>"]);
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
