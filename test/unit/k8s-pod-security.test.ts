// The pod spec the agent actually creates (buildSandboxPod over the real template, as the pool
// controller calls it) against every Pod Security "restricted" check and this project's extras;
// the agent's own pod too. Each check is also shown to catch its violation.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { afterAll, describe, expect, it } from "vitest";
import { buildSandboxPod, loadPodTemplate } from "../../cluster-agent/pool/pod-template.ts";
import { type KObject, OVERLAYS, overlayDir, renderKustomization } from "../../k8s/render.ts";
import { restrictedViolations, sandboxExtrasViolations } from "../support/pod-security.ts";

const tmp = mkdtempSync(join(tmpdir(), "k8s-pss-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function agentPod(runtimeClassName?: string): V1Pod {
  const t = loadPodTemplate(undefined);
  if (!t.ok) throw t.error;
  return buildSandboxPod(t.value, {
    namespace: "pi-sandbox",
    name: "sandbox-abcde",
    execToken: "t",
    image: "img:1",
    runtimeClassName,
  });
}

/** The template as a cluster agent reads it: from the rendered ConfigMap, via SANDBOX_POD_TEMPLATE. */
function podFromOverlay(overlay: string): V1Pod {
  const objs = renderKustomization(overlayDir(overlay));
  const cm = objs.find(
    (o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("pi-sandbox-pod-template-"),
  );
  const data = (cm?.data ?? {}) as Record<string, string>;
  const file = join(tmp, `${overlay}.json`);
  writeFileSync(file, data["sandbox-pod-template.json"] ?? "");
  const t = loadPodTemplate(file);
  if (!t.ok) throw t.error;
  return buildSandboxPod(t.value, {
    namespace: "pi-sandbox",
    name: "sandbox-abcde",
    execToken: "t",
    image: "img:1",
    ...(overlay === "pydantic-http" ? { execMode: "pydantic-http" as const } : {}),
  });
}

describe("Pod Security restricted: the sandbox pod the agent creates", () => {
  it("passes every restricted check and the project's extras (with a runtime class too)", () => {
    expect(restrictedViolations(agentPod().spec as V1PodSpec)).toEqual([]);
    const spec = agentPod("gvisor").spec as V1PodSpec;
    expect(spec.runtimeClassName).toBe("gvisor");
    expect(restrictedViolations(spec)).toEqual([]);
    expect(sandboxExtrasViolations(spec)).toEqual([]);
  });

  it.each(OVERLAYS)("passes them with the template shipped in the %s overlay's ConfigMap", (overlay) => {
    const pod = podFromOverlay(overlay);
    // The pydantic-http component ships its own template (the user's image runs its entrypoint).
    if (overlay !== "pydantic-http") expect(pod.spec).toEqual(agentPod(undefined).spec);
    expect(restrictedViolations(pod.spec as V1PodSpec)).toEqual([]);
    expect(sandboxExtrasViolations(pod.spec as V1PodSpec)).toEqual([]);
  });
});

describe("Pod Security restricted: the agent's own pod", () => {
  it.each(OVERLAYS)("%s: the Deployment's pod template passes every restricted check", (overlay) => {
    const d = renderKustomization(overlayDir(overlay)).find(
      (o: KObject) => o.kind === "Deployment" && o.metadata.name === "pi-sandbox-agent",
    );
    if (!d) throw new Error("no agent Deployment");
    const spec = (d.spec as { template: { spec: V1PodSpec } }).template.spec;
    expect(restrictedViolations(spec)).toEqual([]);
    expect(spec.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
    // The agent needs its token (it calls the API); the sandboxes never get one.
    expect(spec.automountServiceAccountToken).toBe(true);
  });
});

describe("the checks catch each violation", () => {
  const cases: Array<[string, (s: V1PodSpec) => void, RegExp]> = [
    ["hostNetwork", (s) => void (s.hostNetwork = true), /host namespaces/],
    ["hostPID", (s) => void (s.hostPID = true), /hostPID/],
    ["hostIPC", (s) => void (s.hostIPC = true), /hostIPC/],
    ["privileged", (s) => void (sc(s).privileged = true), /privileged/],
    ["hostPath", (s) => s.volumes?.push({ name: "h", hostPath: { path: "/" } }), /hostPath/],
    ["hostPort", (s) => void (c0(s).ports = [{ containerPort: 8080, hostPort: 8080 }]), /host ports/],
    ["procMount", (s) => void (sc(s).procMount = "Unmasked"), /procMount/],
    [
      "unsafe sysctl",
      (s) => void (s.securityContext!.sysctls = [{ name: "kernel.msgmax", value: "1" }]),
      /sysctls/,
    ],
    ["SELinux user", (s) => void (sc(s).seLinuxOptions = { user: "system_u" }), /SELinux/],
    ["AppArmor unconfined", (s) => void (sc(s).appArmorProfile = { type: "Unconfined" }), /AppArmor/],
    [
      "allowPrivilegeEscalation",
      (s) => void (sc(s).allowPrivilegeEscalation = undefined),
      /privilege escalation/,
    ],
    [
      "runAsNonRoot",
      (s) => {
        s.securityContext!.runAsNonRoot = undefined;
        sc(s).runAsNonRoot = undefined;
      },
      /runAsNonRoot/,
    ],
    ["runAsUser 0", (s) => void (sc(s).runAsUser = 0), /runAsUser/],
    ["seccomp Unconfined", (s) => void (sc(s).seccompProfile = { type: "Unconfined" }), /seccomp/],
    [
      "seccomp unset",
      (s) => {
        s.securityContext!.seccompProfile = undefined;
        sc(s).seccompProfile = undefined;
      },
      /seccomp/,
    ],
    ["capabilities not dropped", (s) => void (sc(s).capabilities = {}), /drop ALL/],
    [
      "capability added",
      (s) => void (sc(s).capabilities = { drop: ["ALL"], add: ["SYS_ADMIN"] }),
      /adds SYS_ADMIN/,
    ],
    ["volume type", (s) => s.volumes?.push({ name: "n", nfs: { server: "x", path: "/" } }), /volume types/],
    ["hostProcess", (s) => void (sc(s).windowsOptions = { hostProcess: true }), /hostProcess/],
  ];
  const extras: Array<[string, (s: V1PodSpec) => void, RegExp]> = [
    ["writable root", (s) => void (sc(s).readOnlyRootFilesystem = false), /writable/],
    [
      "token mounted",
      (s) => void (s.automountServiceAccountToken = undefined),
      /automountServiceAccountToken/,
    ],
    ["service links", (s) => void (s.enableServiceLinks = true), /enableServiceLinks/],
    ["no memory limit", (s) => void delete c0(s).resources?.limits?.memory, /no memory limit/],
    ["unbounded emptyDir", (s) => void delete s.volumes![0]!.emptyDir!.sizeLimit, /sizeLimit/],
  ];
  const c0 = (s: V1PodSpec) => s.containers[0]!;
  const sc = (s: V1PodSpec) => {
    c0(s).securityContext ??= {};
    return c0(s).securityContext!;
  };
  it.each(cases)("restricted: %s", (_name, mutate, expected) => {
    const spec = structuredClone(agentPod().spec as V1PodSpec);
    mutate(spec);
    expect(restrictedViolations(spec).join("\n")).toMatch(expected);
  });
  it.each(extras)("extras: %s", (_name, mutate, expected) => {
    const spec = structuredClone(agentPod().spec as V1PodSpec);
    mutate(spec);
    expect(sandboxExtrasViolations(spec).join("\n")).toMatch(expected);
  });
  it("AppArmor annotations other than runtime/default or localhost/* are refused", () => {
    const spec = agentPod().spec as V1PodSpec;
    expect(
      restrictedViolations(spec, { "container.apparmor.security.beta.kubernetes.io/sandbox": "unconfined" }),
    ).toHaveLength(1);
    expect(
      restrictedViolations(spec, {
        "container.apparmor.security.beta.kubernetes.io/sandbox": "runtime/default",
      }),
    ).toEqual([]);
  });
});
