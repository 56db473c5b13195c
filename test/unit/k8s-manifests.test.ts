// Every overlay renders (k8s/render.ts, no kubectl needed), every object validates against the
// Kubernetes OpenAPI schemas (kubernetes-models) and carries no field the API does not know, and
// the manifests agree with each other, with the pod template and with the agent's configuration.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1PodSpec } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../cluster-agent/config.ts";
import {
  configMapHash,
  K8S_DIR,
  type KObject,
  OVERLAYS,
  overlayDir,
  renderKustomization,
} from "../../k8s/render.ts";
import { MIN_AGENT_ENV } from "../support/agent-env.ts";
import { schemaErrors, unknownFields } from "../support/k8s-schema.ts";

const AGENT_NS = "pi-sandbox-system";
const SANDBOX_NS = "pi-sandbox";
const rendered = Object.fromEntries(OVERLAYS.map((o) => [o, renderKustomization(overlayDir(o))]));
const readTemplate = (...path: string[]) =>
  JSON.parse(readFileSync(join(K8S_DIR, ...path, "sandbox-pod-template.json"), "utf8")) as {
    spec: V1PodSpec;
  };
const template = readTemplate("base");
/** The pydantic-http component ships its own template (the user's image, its own entrypoint). */
const templates: Record<string, { spec: V1PodSpec }> = {
  "pydantic-http": readTemplate("components", "pydantic-http"),
};

const find = (objs: KObject[], kind: string, name: string) => {
  const o = objs.find(
    (x) => x.kind === kind && (x.metadata.name === name || x.metadata.name.startsWith(`${name}-`)),
  );
  if (!o) throw new Error(`${kind}/${name} not rendered`);
  return o;
};
// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are inspected ad hoc
const spec = (o: KObject) => o.spec as any;
const configOf = (objs: KObject[]) =>
  find(objs, "ConfigMap", "pi-sandbox-agent-config").data as Record<string, string>;
const agentPodSpec = (objs: KObject[]): V1PodSpec =>
  spec(find(objs, "Deployment", "pi-sandbox-agent")).template.spec;

/** Kubernetes quantities → numbers (cores, bytes). */
function quantity(q: string | number | undefined): number {
  if (q === undefined) return Number.NaN;
  const m = /^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G)?$/.exec(String(q));
  if (!m) throw new Error(`quantity ${q}`);
  const unit = {
    m: 1e-3,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
  } as const;
  return Number(m[1]) * (m[2] ? unit[m[2] as keyof typeof unit] : 1);
}

/** Paths of empty lists and nulls in `v`. ConfigMap data are strings, so JSON inside them is not walked. */
function droppedFields(v: unknown, path = ""): string[] {
  if (v === null) return [path];
  if (Array.isArray(v))
    return v.length === 0 ? [path] : v.flatMap((x, i) => droppedFields(x, `${path}[${i}]`));
  if (typeof v === "object")
    return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => droppedFields(x, `${path}.${k}`));
  return [];
}

describe("rendering", () => {
  it.each(OVERLAYS)("%s: every object validates against the OpenAPI schema and has no unknown field", (o) => {
    const objs = rendered[o] ?? [];
    expect(objs.length).toBeGreaterThan(10);
    for (const obj of objs) {
      expect(schemaErrors(obj), `${obj.kind}/${obj.metadata.name}`).toBeUndefined();
      expect(unknownFields(obj)).toEqual([]);
    }
  });

  // The API server stores neither empty lists (omitempty) nor nulls: a manifest holding one differs
  // from the stored object forever, so every `kubectl apply` reports "configured" and GitOps tools
  // never settle (seen with `egress: []` on a real 1.28 API server).
  it.each(OVERLAYS)("%s: no field the API server drops (empty list, null), so apply does not churn", (o) => {
    for (const obj of rendered[o] ?? [])
      expect(droppedFields(obj), `${obj.kind}/${obj.metadata.name}`).toEqual([]);
    expect(droppedFields(template)).toEqual([]);
  });

  it("the sandbox pod template validates too", () => {
    const pod = { ...template, metadata: { name: "sandbox-x" } } as unknown as KObject;
    expect(schemaErrors(pod)).toBeUndefined();
    expect(unknownFields(pod)).toEqual([]);
  });

  it("the schema checks do catch a wrong type and an unknown field", () => {
    const d = structuredClone(find(rendered.dev ?? [], "Deployment", "pi-sandbox-agent"));
    spec(d).template.spec.containers[0].readinesProbe = { httpGet: { path: "/readyz", port: 8081 } };
    expect(unknownFields(d)).toEqual([
      "Deployment/pi-sandbox-agent.spec.template.spec.containers[0].readinesProbe",
    ]);
    spec(d).replicas = "two";
    expect(schemaErrors(d)).toMatch(/replicas/);
  });

  it("computes kustomize's ConfigMap hash suffix", () => {
    // `kubectl kustomize` on {configMapGenerator: [{name: x, literals: [a=b]}]} names it x-4h2mbtbbt6.
    expect(configMapHash({ a: "b" })).toBe("4h2mbtbbt6");
  });

  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8", timeout: 10_000 });
  const hasKubectl = kubectl.status === 0;
  if (!hasKubectl) {
    console.warn("kubectl not found: skipping the comparison of k8s/render.ts with `kubectl kustomize`");
  }
  it.skipIf(!hasKubectl).each([...OVERLAYS, "../base"])(
    "%s: k8s/render.ts gives exactly what `kubectl kustomize` gives",
    (o) => {
      const out = execFileSync("kubectl", ["kustomize", overlayDir(o)], {
        encoding: "utf8",
        timeout: 30_000,
      });
      const key = (x: KObject) => `${x.kind}/${x.metadata.namespace ?? ""}/${x.metadata.name}`;
      const theirs = parseAllDocuments(out).map((d) => d.toJS() as KObject);
      const mine = renderKustomization(overlayDir(o));
      const byKey = (xs: KObject[]) => Object.fromEntries(xs.map((x) => [key(x), x]));
      expect(JSON.parse(JSON.stringify(byKey(mine)))).toEqual(byKey(theirs));
    },
  );
});

describe.each(OVERLAYS)("%s overlay", (overlay) => {
  const objs = rendered[overlay] ?? [];
  const template = templates[overlay] ?? readTemplate("base");
  const cfg = configOf(objs);
  const pod = agentPodSpec(objs);
  const agent = pod.containers[0]!;

  it("contains no Secret and nothing cluster-scoped but Namespaces and a RuntimeClass", () => {
    expect(objs.filter((o) => o.kind === "Secret")).toEqual([]);
    const clusterScoped = objs.filter((o) => o.metadata.namespace === undefined).map((o) => o.kind);
    expect(new Set(clusterScoped)).toEqual(
      new Set(overlay === "gvisor" ? ["Namespace", "RuntimeClass"] : ["Namespace"]),
    );
    expect(objs.filter((o) => /^Cluster/.test(o.kind))).toEqual([]);
  });

  it("the agent's configuration loads, and agrees with the objects around it", () => {
    const env: Record<string, string> = {
      ...cfg,
      POD_NAME: "pi-sandbox-agent-7d9f-abcde",
      POD_IP: "10.0.0.7",
      POOL_TOKEN: "x",
      AGENT_KEY: JSON.stringify({ kty: "OKP", crv: "Ed25519", x: "x", d: "d" }),
      RELAY_PUBLIC_KEYS: JSON.stringify({ keys: [{ kty: "OKP", crv: "Ed25519", x: "x" }] }),
    };
    const loaded = loadConfig(env);
    if (!loaded.ok) throw loaded.error;
    const c = loaded.value;
    expect(c.agentId).toBe("pi-sandbox-agent-7d9f-abcde");
    expect(c.agentHost).toBe("0.0.0.0");
    expect(c.kubeconfig).toBeUndefined();
    expect(c.namespace).toBe(SANDBOX_NS);
    expect(find(objs, "Namespace", SANDBOX_NS).metadata.namespace).toBeUndefined();
    // Every env var the Deployment sets is one the container gets from a real source.
    const names = (agent.env ?? []).map((e) => e.name);
    expect(names).toEqual(
      expect.arrayContaining(["POD_NAME", "POD_IP", "POOL_TOKEN", "AGENT_KEY", "RELAY_PUBLIC_KEYS"]),
    );
    expect(agent.env?.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.name",
    );
    // Probes and the port are the agent's port.
    const port = agent.ports?.find((p) => p.name === "http");
    expect(port?.containerPort).toBe(c.agentPort);
    expect(agent.ports?.find((p) => p.name === "metrics")?.containerPort).toBe(c.metricsPort);
    expect(c.metricsPort).not.toBe(c.agentPort);
    expect(agent.livenessProbe?.httpGet).toMatchObject({ path: "/healthz", port: "http" });
    expect(agent.readinessProbe?.httpGet).toMatchObject({ path: "/readyz", port: "http" });
    // Sandboxes: a startup probe, not a readiness probe polling every second for the pod's whole
    // life (a warning event per failure); it gives up no earlier than the agent's own deadline.
    const sandbox = template.spec.containers[0];
    expect(sandbox?.readinessProbe).toBeUndefined();
    expect(sandbox?.startupProbe?.httpGet).toMatchObject({ path: "/health", port: 8080 });
    const startup = sandbox?.startupProbe;
    expect((startup?.periodSeconds ?? 10) * (startup?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(
      c.podReadyTimeoutSeconds,
    );
    // SANDBOX_POD_TEMPLATE is the generated ConfigMap's file, where the Deployment mounts it.
    const tplCm = find(objs, "ConfigMap", "pi-sandbox-pod-template");
    const vol = pod.volumes?.find((v) => v.configMap?.name === tplCm.metadata.name);
    const mount = agent.volumeMounts?.find((m) => m.name === vol?.name);
    expect(mount?.readOnly).toBe(true);
    const file = c.podTemplatePath?.slice((mount?.mountPath.length ?? 0) + 1) ?? "";
    expect(c.podTemplatePath?.startsWith(`${mount?.mountPath}/`)).toBe(true);
    expect(JSON.parse((tplCm.data as Record<string, string>)[file] ?? "null")).toEqual(template);
    expect(agent.envFrom?.[0]?.configMapRef?.name).toBe(
      find(objs, "ConfigMap", "pi-sandbox-agent-config").metadata.name,
    );
    // gVisor: the runtime class the agent puts on sandboxes exists.
    if (overlay === "gvisor")
      expect(find(objs, "RuntimeClass", c.runtimeClassName ?? "?")).toMatchObject({ handler: "runsc" });
    else expect(c.runtimeClassName).toBeUndefined();
    expect(c.execMode).toBe(
      overlay === "api-exec" ? "api" : overlay === "pydantic-http" ? "pydantic-http" : "http",
    );
    if (overlay === "dev") {
      expect(spec(find(objs, "Deployment", "pi-sandbox-agent")).replicas).toBe(1);
      expect(c.poolSize).toBeLessThanOrEqual(4);
    } else {
      expect(spec(find(objs, "Deployment", "pi-sandbox-agent")).replicas).toBe(2);
      expect(c.poolSize).toBeGreaterThanOrEqual(8);
      // Production pins images by digest.
      expect(agent.image).toMatch(/@sha256:[0-9a-f]{64}$/);
      expect(c.sandboxImage).toMatch(/@sha256:[0-9a-f]{64}$/);
    }
  });

  it("secrets are referenced by name and key, and the example env file names every key", () => {
    const example = readFileSync(join(K8S_DIR, "secrets.example.env"), "utf8");
    const exampleKeys = new Set(
      example
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.slice(0, l.indexOf("="))),
    );
    const refs = (agent.env ?? []).flatMap((e) =>
      e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : [],
    );
    expect(refs.length).toBe(3);
    for (const r of refs) {
      expect(r.name).toBe("pi-sandbox-agent");
      expect(exampleKeys.has(r.key)).toBe(true);
    }
    // The sandbox pod template references no Secret and carries no token: the controller puts
    // each pod's own derived token in as a plain value (cluster-agent/exec/pod-token.ts).
    expect(JSON.stringify(template)).not.toContain("secretKeyRef");
    expect(template.spec.containers[0]?.env?.some((e) => e.name === "POOL_TOKEN")).toBe(false);
  });

  it("the agent Deployment: non-root, read-only root, resources, PDB, service account", () => {
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(agent.securityContext?.readOnlyRootFilesystem).toBe(true);
    for (const r of ["cpu", "memory"]) {
      expect(agent.resources?.requests?.[r]).toBeTruthy();
      expect(agent.resources?.limits?.[r]).toBeTruthy();
    }
    const labels = spec(find(objs, "Deployment", "pi-sandbox-agent")).template.metadata.labels;
    const pdb = spec(find(objs, "PodDisruptionBudget", "pi-sandbox-agent"));
    expect(labels).toMatchObject(pdb.selector.matchLabels);
    expect(pdb.maxUnavailable).toBe(1);
    expect(find(objs, "ServiceAccount", pod.serviceAccountName ?? "?").metadata.namespace).toBe(AGENT_NS);
  });

  it("the sandbox namespace enforces Pod Security restricted and sandboxes get no token", () => {
    const labels = find(objs, "Namespace", SANDBOX_NS).metadata.labels ?? {};
    for (const mode of ["enforce", "audit", "warn"]) {
      expect(labels[`pod-security.kubernetes.io/${mode}`]).toBe("restricted");
    }
    // The template's own ServiceAccount, shipped in the sandbox namespace (a pod naming a missing
    // one is refused by the ServiceAccount admission plugin), mounting no token, bound to no Role.
    const name = template.spec.serviceAccountName ?? "";
    expect(name).not.toMatch(/^(default)?$/);
    const sa = find(objs, "ServiceAccount", name);
    expect(sa.metadata).toMatchObject({ name, namespace: SANDBOX_NS });
    expect(sa.automountServiceAccountToken).toBe(false);
    expect(template.spec.automountServiceAccountToken).toBe(false);
    const subjects = objs
      .filter((o) => o.kind === "RoleBinding")
      .flatMap((b) => b.subjects as Array<{ name: string }>);
    expect(subjects.map((x) => x.name)).not.toContain(name);
  });

  it("a first `kubectl apply` is clean: nothing rendered is an object the cluster creates itself", () => {
    // kubectl apply warns "resource … is missing the kubectl.kubernetes.io/last-applied-configuration
    // annotation" for every object that exists before the first apply and was not created by one:
    // the ServiceAccount `default` and ConfigMap `kube-root-ca.crt` of every namespace (the
    // controller-manager writes them), and the built-in namespaces.
    const builtIn = (o: KObject) =>
      (o.kind === "ServiceAccount" && o.metadata.name === "default") ||
      (o.kind === "ConfigMap" && o.metadata.name === "kube-root-ca.crt") ||
      (o.kind === "Namespace" && /^(default|kube-system|kube-public|kube-node-lease)$/.test(o.metadata.name));
    expect(objs.filter(builtIn).map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([]);
  });

  it("RBAC: namespaced to the sandboxes (Secrets: to the agent's own, by name), bound to the agent, pods/exec only with EXEC_MODE=api", () => {
    type Rule = { resources: string[]; verbs: string[] };
    const all = objs.filter((o) => o.kind === "Role");
    // The tenants' secrets and the egress CA: Secrets in the agent's namespace, read and written by
    // name only (no list, watch or delete); nothing else in that Role.
    const secretRoles = all.filter((r) => r.metadata.namespace === AGENT_NS);
    expect(secretRoles.map((r) => r.metadata.name)).toEqual(["pi-sandbox-agent-secrets"]);
    expect(secretRoles[0]?.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["get", "create", "update"] },
    ]);
    const roles = all.filter((r) => r.metadata.namespace !== AGENT_NS);
    for (const r of roles) expect(r.metadata.namespace).toBe(SANDBOX_NS);
    const rules = roles.flatMap((r) => r.rules as Rule[]);
    const resources = rules.flatMap((r) => r.resources);
    expect(resources).not.toContain("secrets");
    expect(all.flatMap((r) => (r.rules as Rule[]).flatMap((x) => x.verbs))).not.toContain("*");
    expect(resources.includes("pods/exec")).toBe(configOf(objs).EXEC_MODE === "api");
    for (const b of objs.filter((o) => o.kind === "RoleBinding")) {
      const role = all.find((r) => r.metadata.name === (b.roleRef as { name: string }).name);
      expect(b.metadata.namespace).toBe(role?.metadata.namespace);
      expect([SANDBOX_NS, AGENT_NS]).toContain(b.metadata.namespace);
      expect(b.subjects).toEqual([
        { kind: "ServiceAccount", name: pod.serviceAccountName, namespace: AGENT_NS },
      ]);
      expect(all.map((r) => r.metadata.name)).toContain((b.roleRef as { name: string }).name);
    }
  });

  it("NetworkPolicies: sandboxes reach only the agents' egress proxy and take ingress only from agents on the exec port", () => {
    const np = spec(find(objs, "NetworkPolicy", "pi-sandbox-isolation"));
    expect(find(objs, "NetworkPolicy", "pi-sandbox-isolation").metadata.namespace).toBe(SANDBOX_NS);
    expect(np.podSelector).toEqual({});
    expect(np.policyTypes).toEqual(["Ingress", "Egress"]);
    const c = loadConfig({ ...cfg, ...MIN_AGENT_ENV, POD_IP: "10.0.0.7", EDGE_URL: undefined });
    if (!c.ok) throw c.error;
    const proxyPort = c.value.egress?.port;
    expect(np.egress).toHaveLength(1);
    expect(np.egress[0].ports).toEqual([{ protocol: "TCP", port: proxyPort }]);
    expect(np.egress[0].to).toHaveLength(1);
    const agentPodLabels = spec(find(objs, "Deployment", "pi-sandbox-agent")).template.metadata.labels;
    expect(np.egress[0].to[0].namespaceSelector.matchLabels).toEqual({
      "kubernetes.io/metadata.name": AGENT_NS,
    });
    expect(agentPodLabels).toMatchObject(np.egress[0].to[0].podSelector.matchLabels);
    // The agents take the proxy port from sandbox pods only; the port is the container's.
    const agentNp = spec(find(objs, "NetworkPolicy", "pi-sandbox-agent"));
    const proxyIngress = agentNp.ingress.filter((r: { ports: Array<{ port: number }> }) =>
      r.ports.some((p) => p.port === proxyPort),
    );
    expect(proxyIngress).toHaveLength(1);
    expect(proxyIngress[0].from[0].namespaceSelector.matchLabels).toEqual({
      "kubernetes.io/metadata.name": SANDBOX_NS,
    });
    expect(agentPodSpec(objs).containers[0]?.ports?.find((p) => p.name === "egress")?.containerPort).toBe(
      proxyPort,
    );
    expect(
      agentPodSpec(objs).containers[0]?.env?.find((e) => e.name === "POD_IP")?.valueFrom?.fieldRef?.fieldPath,
    ).toBe("status.podIP");
    const execPort = template.spec.containers[0]?.ports?.[0]?.containerPort;
    expect(np.ingress).toHaveLength(1);
    expect(np.ingress[0].ports).toEqual([{ protocol: "TCP", port: execPort }]);
    expect(np.ingress[0].from).toHaveLength(1);
    const from = np.ingress[0].from[0];
    expect(from.namespaceSelector.matchLabels).toEqual({ "kubernetes.io/metadata.name": AGENT_NS });
    const agentLabels = spec(find(objs, "Deployment", "pi-sandbox-agent")).template.metadata.labels;
    expect(agentLabels).toMatchObject(from.podSelector.matchLabels);
  });

  it("NetworkPolicies: the agent reaches only the API server, DNS, sandboxes and public HTTP(S)", () => {
    const np = spec(find(objs, "NetworkPolicy", "pi-sandbox-agent"));
    expect(np.policyTypes).toEqual(["Ingress", "Egress"]);
    const ports = np.egress.map((r: { ports: Array<{ port: number }> }) => r.ports.map((p) => p.port).sort());
    // dev adds `wrangler dev` on the host (8787); everywhere else exactly these four.
    expect(ports).toEqual([
      [443, 6443],
      [53, 53],
      [8080],
      [443, 80].sort(),
      ...(overlay === "dev" ? [[8787]] : []),
    ]);
    for (const rule of np.egress) expect(rule.to?.length).toBeGreaterThan(0);
    const publicRule = np.egress[3].to[0].ipBlock;
    expect(publicRule.except).toEqual(expect.arrayContaining(["10.0.0.0/8", "169.254.0.0/16"]));
  });

  it("NetworkPolicies: the agent's metrics port takes ingress only from the monitoring namespace's scraper", () => {
    const np = spec(find(objs, "NetworkPolicy", "pi-sandbox-agent"));
    // POD_IP comes from the Downward API (the base runs the egress proxy, which needs it).
    const c = loadConfig({ ...cfg, ...MIN_AGENT_ENV, POD_IP: "10.0.0.7", EDGE_URL: undefined });
    if (!c.ok) throw c.error;
    type Rule = {
      from?: Array<Record<string, { matchLabels: Record<string, string> }>>;
      ports: Array<{ port: number }>;
    };
    const rules = np.ingress as Rule[];
    const toMetrics = rules.filter((r) => r.ports.some((p) => p.port === c.value.metricsPort));
    expect(toMetrics).toHaveLength(1);
    expect(toMetrics[0]?.ports).toEqual([{ protocol: "TCP", port: c.value.metricsPort }]);
    expect(toMetrics[0]?.from).toEqual([
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
        podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
      },
    ]);
    // No other rule opens it (a rule without ports would open every port).
    for (const r of rules) expect(r.ports.length).toBeGreaterThan(0);
  });

  it("quota and limits fit the pod template and the pool size", () => {
    const c = loadConfig({ ...cfg, ...MIN_AGENT_ENV, POD_IP: "10.0.0.7", EDGE_URL: undefined });
    if (!c.ok) throw c.error;
    const hard = spec(find(objs, "ResourceQuota", "pi-sandbox-pool")).hard as Record<string, string>;
    const pods = quantity(hard.pods);
    // The agent caps live sandbox pods at POOL_MAX_PODS; replace recycling briefly has terminating
    // pods next to them: room for POOL_SIZE more.
    expect(pods).toBeGreaterThanOrEqual(c.value.poolMaxPods + c.value.poolSize);
    const res = template.spec.containers[0]?.resources ?? {};
    for (const kind of ["requests", "limits"] as const) {
      for (const [r, v] of Object.entries(res[kind] ?? {})) {
        // Never the resource totals first: the pod count binds.
        expect(quantity(hard[`${kind}.${r}`]), `${kind}.${r}`).toBeGreaterThanOrEqual(pods * quantity(v));
      }
    }
    const lr = spec(find(objs, "LimitRange", "pi-sandbox-limits")).limits[0];
    expect(lr.type).toBe("Container");
    for (const [r, v] of Object.entries(res.limits ?? {})) {
      expect(quantity(v)).toBeLessThanOrEqual(quantity(lr.max[r]));
      expect(quantity(lr.default[r])).toBe(quantity(v));
    }
    for (const [r, v] of Object.entries(res.requests ?? {})) {
      expect(quantity(lr.defaultRequest[r])).toBe(quantity(v));
      if (lr.min[r]) expect(quantity(v)).toBeGreaterThanOrEqual(quantity(lr.min[r]));
    }
    // Memory-backed emptyDirs count against the memory limit.
    const memVolumes = template.spec.volumes?.filter((v) => v.emptyDir?.medium === "Memory") ?? [];
    const memSum = memVolumes.reduce((s, v) => s + quantity(v.emptyDir?.sizeLimit), 0);
    expect(memSum).toBeLessThan(quantity(res.limits?.memory));
  });
});
