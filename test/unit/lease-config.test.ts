import { describe, expect, it } from "vitest";
import { loadConfig } from "../../cluster-agent/config.ts";
import { buildSandboxPod, loadPodTemplate, podName } from "../../cluster-agent/pool/pod-template.ts";
import { MIN_AGENT_ENV } from "../support/agent-env.ts";

describe("agent config", () => {
  it("applies the documented defaults", () => {
    const r = loadConfig({ ...MIN_AGENT_ENV });
    if (!r.ok) throw r.error;
    expect(r.value).toMatchObject({
      namespace: "pi-sandbox",
      poolSize: 8,
      leaseTtlSeconds: 45,
      queueTimeoutSeconds: 15,
      recycle: "replace",
      tenantMaxLeases: 0,
      poolMaxPods: 64,
      poolMaxCreatePerSecond: 32,
      poolScaleDownAfterSeconds: 60,
      sandboxImage: "pi-sandbox-runtime/sandbox:dev",
      region: "local",
      execMode: "http",
      agentPort: 8081,
      podReadyTimeoutSeconds: 60,
      kubeconfig: undefined,
    });
    expect(r.value.agentId).toMatch(/^agent-[0-9a-f]{8}$/);
  });

  it("refuses POOL_MAX_PODS below POOL_SIZE and non-numeric pool settings, naming them", () => {
    const below = loadConfig({ ...MIN_AGENT_ENV, POOL_SIZE: "10", POOL_MAX_PODS: "9" });
    expect(below.ok || below.error.message).toMatch(/POOL_MAX_PODS \(9\) must be at least POOL_SIZE \(10\)/);
    const equal = loadConfig({ ...MIN_AGENT_ENV, POOL_SIZE: "10", POOL_MAX_PODS: "10" });
    expect(equal.ok).toBe(true);
    for (const name of ["POOL_MAX_PODS", "POOL_MAX_CREATE_PER_SECOND", "POOL_SCALE_DOWN_AFTER_SECONDS"]) {
      const r = loadConfig({ ...MIN_AGENT_ENV, [name]: "lots" });
      expect(r.ok || r.error.message, name).toContain(name);
    }
  });

  it("checks the relations between settings in loadConfig, naming each broken one", () => {
    const leader = loadConfig({ ...MIN_AGENT_ENV, LEADER_LEASE_SECONDS: "1" });
    expect(leader.ok || leader.error.message).toMatch(/LEADER_LEASE_SECONDS \(1\) must be at least 2/);
    expect(loadConfig({ ...MIN_AGENT_ENV, LEADER_LEASE_SECONDS: "2" }).ok).toBe(true);
    // Every broken relation is reported at once, each on the setting that must change.
    const { POOL_TOKEN: _, ...noToken } = MIN_AGENT_ENV;
    const many = loadConfig({ ...noToken, POOL_SIZE: "5", POOL_MAX_PODS: "4", EDGE_URL: "https://e.test" });
    expect(!many.ok && many.error.details?.map((d) => d.path)).toEqual([
      "POOL_MAX_PODS",
      "POOL_TOKEN",
      "EDGE_URL",
    ]);
  });

  it("takes AGENT_ID, else POD_NAME", () => {
    const a = loadConfig({ ...MIN_AGENT_ENV, AGENT_ID: "a1", POD_NAME: "p1" });
    const b = loadConfig({ ...MIN_AGENT_ENV, POD_NAME: "p1" });
    expect(a.ok && a.value.agentId).toBe("a1");
    expect(b.ok && b.value.agentId).toBe("p1");
  });

  it("parses numbers and enums from strings and refuses bad values with a named field", () => {
    const r = loadConfig({
      ...MIN_AGENT_ENV,
      POOL_SIZE: "3",
      RECYCLE: "scrub",
      LEASE_TTL_SECONDS: "4",
      EXEC_MODE: "api",
    });
    expect(r.ok && [r.value.poolSize, r.value.recycle, r.value.leaseTtlSeconds, r.value.execMode]).toEqual([
      3,
      "scrub",
      4,
      "api",
    ]);
    for (const env of [
      { POOL_SIZE: "eight" },
      { RECYCLE: "burn" },
      { LEASE_TTL_SECONDS: "0" },
      { SANDBOX_NAMESPACE: "Bad_NS" },
      { AGENT_ID: "a/b" },
    ]) {
      const bad = loadConfig({ ...MIN_AGENT_ENV, ...env });
      expect(bad.ok).toBe(false);
      if (!bad.ok) expect(bad.error.code).toBe("invalid_request");
    }
    const bad = loadConfig({ ...MIN_AGENT_ENV, POOL_SIZE: "-1" });
    expect(!bad.ok && bad.error.details?.[0]?.path).toBe("POOL_SIZE");
  });
});

describe("sandbox pod template", () => {
  it("is Pod Security restricted and filled in by the builder", () => {
    const t = loadPodTemplate(undefined);
    if (!t.ok) throw t.error;
    const pod = buildSandboxPod(t.value, {
      namespace: "ns1",
      name: "sandbox-x7k2q",
      execToken: "pod-token-1",
      image: "img:1",
      runtimeClassName: "gvisor",
    });
    const spec = pod.spec;
    const c = spec?.containers[0];
    // Named by the controller (the exec token is bound to the name), never by generateName.
    expect(pod.metadata?.name).toBe("sandbox-x7k2q");
    expect(pod.metadata?.generateName).toBeUndefined();
    expect(pod.metadata?.namespace).toBe("ns1");
    expect(pod.metadata?.labels).toMatchObject({
      "app.kubernetes.io/name": "pi-sandbox",
      "app.kubernetes.io/managed-by": "pi-sandbox-runtime",
    });
    expect(spec?.runtimeClassName).toBe("gvisor");
    expect(spec?.restartPolicy).toBe("Never");
    expect(spec?.automountServiceAccountToken).toBe(false);
    expect(spec?.enableServiceLinks).toBe(false);
    expect(spec?.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c?.image).toBe("img:1");
    // `args`, not `command`: the sandbox image's ENTRYPOINT (tini) stays pid 1 and reaps orphans.
    expect([...(c?.command ?? []), ...(c?.args ?? [])]).toEqual([
      "/opt/sandbox-server/node",
      "/opt/sandbox-server/server.mjs",
    ]);
    expect(c?.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c?.resources?.limits).toHaveProperty("cpu");
    expect(c?.resources?.limits).toHaveProperty("memory");
    expect(c?.resources?.requests).toHaveProperty("cpu");
    expect(c?.startupProbe?.httpGet).toMatchObject({ path: "/health", port: 8080 });
    expect(c?.volumeMounts?.map((m) => m.mountPath).sort()).toEqual(["/tmp", "/workspace"]);
    for (const v of spec?.volumes ?? []) expect(v.emptyDir?.sizeLimit).toBeTruthy();
    const env = Object.fromEntries((c?.env ?? []).map((e) => [e.name, e]));
    // The pod's own token as a plain value; no Secret is referenced anywhere in the pod.
    expect(env.POOL_TOKEN).toEqual({ name: "POOL_TOKEN", value: "pod-token-1" });
    expect(JSON.stringify(pod)).not.toContain("secretKeyRef");
    expect(env.LISTEN_HOST?.valueFrom?.fieldRef?.fieldPath).toBe("status.podIP");
    expect(spec?.terminationGracePeriodSeconds).toBeLessThanOrEqual(5);
    // The builder must not mutate the template it was given.
    const again = buildSandboxPod(t.value, {
      namespace: "ns2",
      name: "sandbox-b",
      execToken: "t2",
      image: "img:2",
    });
    expect(again.spec?.runtimeClassName).toBeUndefined();
    expect(again.spec?.containers[0]?.image).toBe("img:2");
  });

  it("names pods like generateName does: the prefix and 5 characters of Kubernetes' alphabet", () => {
    const t = loadPodTemplate(undefined);
    if (!t.ok) throw t.error;
    const names = new Set(Array.from({ length: 50 }, () => podName(t.value)));
    for (const n of names) expect(n).toMatch(/^sandbox-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(names.size).toBeGreaterThan(40);
  });

  it("replaces a template's own POOL_TOKEN entry (e.g. an old secretKeyRef) with the pod's token", () => {
    const t = loadPodTemplate(undefined);
    if (!t.ok) throw t.error;
    const old = structuredClone(t.value);
    old.spec?.containers[0]?.env?.push({
      name: "POOL_TOKEN",
      valueFrom: { secretKeyRef: { name: "pi-sandbox-pool-token", key: "token" } },
    });
    const pod = buildSandboxPod(old, { namespace: "ns", name: "sandbox-q", execToken: "own", image: "i" });
    const tokens = pod.spec?.containers[0]?.env?.filter((e) => e.name === "POOL_TOKEN");
    expect(tokens).toEqual([{ name: "POOL_TOKEN", value: "own" }]);
  });

  it("reports an unreadable override", () => {
    const r = loadPodTemplate("/nonexistent/template.json");
    expect(r.ok).toBe(false);
  });
});
