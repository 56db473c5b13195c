// The base applies to devcluster for the kinds devcluster implements (POST → 201), the Secrets
// created the way k8s/README.md says are accepted, and a sandbox pod built from the rendered
// ConfigMap's template (as the agent builds it) runs in the rendered namespace and serves.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { buildSandboxPod, podName } from "../../cluster-agent/pool/pod-template.ts";
import { KINDS } from "../../devcluster/apiserver/kinds/index.ts";
import { K8S_DIR, type KObject, renderKustomization } from "../../k8s/render.ts";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { waitFor } from "../support/lease-cluster.ts";

const base = renderKustomization(join(K8S_DIR, "base"));
const kindOf = (o: KObject) => {
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  return KINDS.find((k) => k.group === group && k.version === version && k.kind === o.kind);
};
const collection = (o: KObject) => {
  const k = kindOf(o);
  if (!k) throw new Error(`devcluster has no ${o.kind}`);
  const prefix = k.group === "" ? `/api/${k.version}` : `/apis/${k.group}/${k.version}`;
  return k.namespaced
    ? `${prefix}/namespaces/${o.metadata.namespace}/${k.resource}`
    : `${prefix}/${k.resource}`;
};

let cluster: TestCluster;
async function call(method: string, path: string, body?: unknown) {
  const res = await cluster.request(method, path, body);
  return { status: res.status, json: JSON.parse(res.text) as Record<string, unknown> };
}

/** `kubectl create secret generic NAME --from-env-file=FILE`: one key per KEY=VALUE line. */
function secretFromEnvFile(name: string, namespace: string, file: string): KObject {
  const data: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const at = line.indexOf("=");
    data[line.slice(0, at)] = Buffer.from(line.slice(at + 1)).toString("base64");
  }
  return { apiVersion: "v1", kind: "Secret", metadata: { name, namespace }, type: "Opaque", data };
}

beforeAll(async () => {
  cluster = await startTestCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.close();
}, 60_000);

describe("the base applied to devcluster", () => {
  const applicable = base.filter((o) => kindOf(o));
  it(`creates every object of a kind devcluster implements (${[...new Set(applicable.map((o) => o.kind))].join(", ")})`, async () => {
    expect(applicable.filter((o) => o.kind === "Namespace").length).toBe(2);
    // Namespaces first, as kubectl apply orders them.
    const ordered = [...applicable].sort(
      (a, b) => Number(b.kind === "Namespace") - Number(a.kind === "Namespace"),
    );
    for (const o of ordered) {
      const r = await call("POST", collection(o), o);
      expect(r.status, `${o.kind}/${o.metadata.name}: ${JSON.stringify(r.json)}`).toBe(201);
    }
    const ns = await call("GET", "/api/v1/namespaces/pi-sandbox");
    expect(
      (ns.json.metadata as { labels: Record<string, string> }).labels["pod-security.kubernetes.io/enforce"],
    ).toBe("restricted");
  });

  it("accepts the Secrets created as k8s/README.md documents", async () => {
    const agentSecret = secretFromEnvFile(
      "pi-sandbox-agent",
      "pi-sandbox-system",
      join(K8S_DIR, "secrets.example.env"),
    );
    expect(Object.keys(agentSecret.data as object).sort()).toEqual([
      "agent-key",
      "openai-api-key",
      "pool-token",
    ]);
    expect((await call("POST", collection(agentSecret), agentSecret)).status).toBe(201);
  });

  it("runs a sandbox pod built from the rendered ConfigMap's template, as the agent builds it", async () => {
    const cm = base.find(
      (o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("pi-sandbox-pod-template-"),
    );
    const config = base.find(
      (o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("pi-sandbox-agent-config-"),
    )?.data as Record<string, string>;
    const files = (cm?.data ?? {}) as Record<string, string>;
    const template = JSON.parse(files["sandbox-pod-template.json"] ?? "null");
    const namespace = config.SANDBOX_NAMESPACE ?? "?";
    const podNameChosen = podName(template);
    const pod = buildSandboxPod(template, {
      namespace,
      name: podNameChosen,
      // No Secret in the sandbox namespace: the pod's exec token is a plain env value.
      execToken: podExecToken("0123456789abcdef", namespace, podNameChosen),
      image: config.SANDBOX_IMAGE ?? "?",
    });
    const created = await call("POST", `/api/v1/namespaces/${config.SANDBOX_NAMESPACE}/pods`, pod);
    expect(created.status).toBe(201);
    const name = (created.json.metadata as { name: string }).name;
    const ip = await waitFor(
      "the sandbox pod Ready",
      async () => {
        const p = (await call("GET", `/api/v1/namespaces/pi-sandbox/pods/${name}`)).json as {
          status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> };
        };
        const ready = p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        return ready ? p.status?.podIP : undefined;
      },
      30_000,
    );
    const health = await fetch(`http://${ip}:8080/health`, { signal: AbortSignal.timeout(5_000) });
    expect(await health.json()).toEqual({ ok: true });
    await call("DELETE", `/api/v1/namespaces/pi-sandbox/pods/${name}?gracePeriodSeconds=0`);
  });
});
