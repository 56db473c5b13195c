import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { emptyDirEvictionMessage, emptyDirMounts } from "../../devcluster/kubelet/emptydir.ts";
import { resolveEnv } from "../../devcluster/kubelet/env.ts";
import { imageRepository } from "../../devcluster/kubelet/image-ref.ts";
import { type ContainerSpec, ociSpec } from "../../devcluster/kubelet/oci-spec.ts";
import { PodConditions } from "../../devcluster/kubelet/pod-status.ts";
import { probePort } from "../../devcluster/kubelet/probes.ts";
import { quantityBytes } from "../../devcluster/kubelet/quantity.ts";
import { runtimeDefaultSeccomp } from "../../devcluster/kubelet/seccomp.ts";

describe("imageRepository", () => {
  it.each([
    ["pi-sandbox-runtime/sandbox:dev", "pi-sandbox-runtime/sandbox"],
    ["pi-sandbox-runtime/sandbox", "pi-sandbox-runtime/sandbox"],
    ["pi-sandbox-runtime/sandbox@sha256:abcd", "pi-sandbox-runtime/sandbox"],
    ["pi-sandbox-runtime/sandbox:dev@sha256:abcd", "pi-sandbox-runtime/sandbox"],
    ["registry.local:5000/team/img:1.2", "registry.local:5000/team/img"],
    ["registry.local:5000/team/img", "registry.local:5000/team/img"],
  ])("%s → %s", (ref, repo) => {
    expect(imageRepository(ref)).toBe(repo);
  });
});

describe("quantityBytes", () => {
  it.each([
    ["64Mi", 64 * 1024 * 1024],
    ["1Gi", 1024 ** 3],
    ["500k", 500_000],
    ["1G", 1e9],
    ["12345", 12345],
    ["1.5Ki", 1536],
  ])("%s", (q, n) => {
    expect(quantityBytes(q)).toBe(n);
  });
  it("rejects garbage and passes undefined through", () => {
    expect(quantityBytes("lots")).toBeUndefined();
    expect(quantityBytes(undefined)).toBeUndefined();
  });
});

describe("resolveEnv", () => {
  const pod: V1Pod = {
    metadata: { name: "p1", namespace: "ns1", uid: "u-1", labels: { app: "x" } },
    spec: { nodeName: "node-a", containers: [] },
  };
  const secrets: Record<string, Record<string, string>> = { s: { token: "t0k" } };
  const read = async (_ns: string, name: string) => secrets[name];

  it("resolves values, $(VAR) references, secretKeyRef and fieldRefs", async () => {
    const c: V1Container = {
      name: "c",
      env: [
        { name: "A", value: "1" },
        { name: "B", value: "$(A)-$(MISSING)-$$(A)" },
        { name: "T", valueFrom: { secretKeyRef: { name: "s", key: "token" } } },
        { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: "N", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
        { name: "L", valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
      ],
    };
    const r = await resolveEnv(pod, c, "127.0.1.9", "127.0.0.1", read);
    expect(r).toEqual({
      ok: true,
      env: {
        A: "1",
        B: "1-$(MISSING)-$(A)",
        T: "t0k",
        IP: "127.0.1.9",
        N: "p1",
        NS: "ns1",
        NODE: "node-a",
        L: "x",
      },
    });
  });

  it("fails on a missing secret or key unless optional", async () => {
    const missing: V1Container = {
      name: "c",
      env: [{ name: "T", valueFrom: { secretKeyRef: { name: "nope", key: "token" } } }],
    };
    expect(await resolveEnv(pod, missing, "", "", read)).toEqual({
      ok: false,
      message: 'secret "nope" not found',
    });
    const badKey: V1Container = {
      name: "c",
      env: [{ name: "T", valueFrom: { secretKeyRef: { name: "s", key: "other" } } }],
    };
    expect(await resolveEnv(pod, badKey, "", "", read)).toMatchObject({ ok: false });
    const optional: V1Container = {
      name: "c",
      env: [{ name: "T", valueFrom: { secretKeyRef: { name: "nope", key: "token", optional: true } } }],
    };
    expect(await resolveEnv(pod, optional, "", "", read)).toEqual({ ok: true, env: {} });
  });
});

describe("ociSpec", () => {
  const spec: ContainerSpec = {
    hostname: "pod-1",
    uid: 1000,
    gid: 1000,
    supplementalGids: [1000],
    readOnlyRoot: true,
    workingDir: "/workspace",
    binds: [{ host: "/srv/image", container: "/opt/app" }],
    tmpfs: [{ path: "/workspace", sizeBytes: 1024 }, { path: "/tmp" }],
    argv: ["node", "/opt/app/server.mjs"],
    env: { A: "1" },
    capabilities: [],
    limits: { memoryBytes: 512 * 1024 * 1024, cpuMillis: 500, pids: 256 },
  };
  const seccomp = runtimeDefaultSeccomp([], "6.1.0", "x64");
  // biome-ignore lint/suspicious/noExplicitAny: the OCI config is inspected ad hoc
  const oci = ociSpec(spec, { hostId: 1_000_065_536, size: 65_536 }, seccomp, "devcluster/x") as any;
  const dest = (d: string) => oci.mounts.find((m: { destination: string }) => m.destination === d);

  it("never binds all of /etc, and binds the image read-only", () => {
    expect(dest("/etc")).toBeUndefined();
    expect(dest("/etc/shadow")).toBeUndefined();
    expect(dest("/opt/app")).toMatchObject({ type: "bind", source: "/srv/image" });
    expect(dest("/opt/app").options).toContain("ro");
    expect(dest("/usr").options).toContain("ro");
  });

  it("sizes emptyDir tmpfs mounts and leaves unsized ones unsized", () => {
    expect(dest("/workspace").options).toContain("size=1024");
    expect(dest("/tmp").options.some((o: string) => o.startsWith("size="))).toBe(false);
  });

  it("isolates: all seven namespaces, its own id range, no capabilities, no_new_privs", () => {
    expect(oci.linux.namespaces.map((n: { type: string }) => n.type).sort()).toEqual([
      "cgroup",
      "ipc",
      "mount",
      "network",
      "pid",
      "user",
      "uts",
    ]);
    expect(oci.linux.uidMappings).toEqual([{ containerID: 0, hostID: 1_000_065_536, size: 65_536 }]);
    expect(oci.process.user).toMatchObject({ uid: 1000, gid: 1000 });
    expect(oci.process.capabilities.bounding).toEqual([]);
    expect(oci.process.noNewPrivileges).toBe(true);
    expect(oci.linux.readonlyPaths).toContain("/proc/sys");
    expect(oci.linux.maskedPaths).toContain("/proc/kcore");
    expect(oci.root).toEqual({ path: "rootfs", readonly: true });
  });

  it("limits: memory without extra swap, cpu quota per 100 ms period, pids", () => {
    expect(oci.linux.resources.memory).toEqual({ limit: 536870912, swap: 536870912 });
    expect(oci.linux.resources.cpu).toEqual({ quota: 50_000, period: 100_000 });
    expect(oci.linux.resources.pids).toEqual({ limit: 256 });
    expect(oci.linux.cgroupsPath).toBe("devcluster/x");
  });
});

describe("runtimeDefaultSeccomp (moby's default profile)", () => {
  const names = (p: ReturnType<typeof runtimeDefaultSeccomp>) =>
    new Set(p.syscalls.filter((r) => r.action === "SCMP_ACT_ALLOW" && !r.args).flatMap((r) => r.names));

  it("denies by default with EPERM and covers x86_64 with its 32-bit sub-architectures", () => {
    const p = runtimeDefaultSeccomp([], "6.1.0", "x64");
    expect(p.defaultAction).toBe("SCMP_ACT_ERRNO");
    expect(p.architectures).toEqual(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  });

  it("without CAP_SYS_ADMIN: no unshare, mount, setns, bpf; clone only with a flag filter", () => {
    const allowed = names(runtimeDefaultSeccomp([], "6.1.0", "x64"));
    for (const s of ["unshare", "mount", "setns", "bpf", "keyctl", "init_module", "clock_settime"]) {
      expect(allowed.has(s)).toBe(false);
    }
    expect(allowed.has("read")).toBe(true);
    expect(allowed.has("arch_prctl")).toBe(true);
    expect(allowed.has("clone")).toBe(false);
  });

  it("rules follow the capabilities a container holds (as moby and containerd compute them)", () => {
    expect(names(runtimeDefaultSeccomp(["CAP_SYS_ADMIN"], "6.1.0", "x64")).has("unshare")).toBe(true);
    expect(names(runtimeDefaultSeccomp(["CAP_SYS_TIME"], "6.1.0", "x64")).has("clock_settime")).toBe(true);
  });

  it("refuses an architecture it has no profile for rather than running unfiltered", () => {
    expect(() => runtimeDefaultSeccomp([], "6.1.0", "riscv64")).toThrow(/no RuntimeDefault/);
  });
});

describe("probePort", () => {
  const c: V1Container = { name: "c", ports: [{ name: "http", containerPort: 8080 }] };
  it("takes a number, a numeric string or a named container port", () => {
    expect(probePort({ httpGet: { port: 9090 } }, c)).toBe(9090);
    expect(probePort({ httpGet: { port: "9091" } }, c)).toBe(9091);
    expect(probePort({ httpGet: { port: "http" } }, c)).toBe(8080);
    expect(probePort({ httpGet: { port: "nope" } }, c)).toBeUndefined();
  });
});

describe("PodConditions", () => {
  it("keeps lastTransitionTime until the status really changes", async () => {
    const c = new PodConditions();
    c.set("Ready", false, "ContainersNotReady");
    const first = c.render()[0]?.lastTransitionTime;
    await new Promise((r) => setTimeout(r, 1100));
    c.set("Ready", false, "ContainersNotReady");
    expect(c.render()[0]?.lastTransitionTime).toBe(first);
    c.set("Ready", true);
    const flipped = c.render()[0];
    expect(flipped?.status).toBe("True");
    expect(flipped?.lastTransitionTime).not.toBe(first);
    expect(flipped?.reason).toBeUndefined();
  });
});

describe("emptyDirMounts", () => {
  const pod: V1Pod = {
    spec: {
      containers: [],
      volumes: [
        { name: "workspace", emptyDir: { sizeLimit: "256Mi" } },
        { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "64Mi" } },
        { name: "scratch", emptyDir: {} },
        { name: "token", secret: { secretName: "x" } },
      ],
    },
  };
  const c: V1Container = {
    name: "c",
    volumeMounts: [
      { name: "workspace", mountPath: "/workspace" },
      { name: "tmp", mountPath: "/tmp" },
      { name: "scratch", mountPath: "/scratch", readOnly: true },
      { name: "token", mountPath: "/var/run/token" },
    ],
  };

  it("disk-backed: measured against the limit, tmpfs backstop at twice it; Memory: tmpfs of the limit, as a real node sizes it", () => {
    const { tmpfs, limited, skipped } = emptyDirMounts(pod, c);
    expect(tmpfs).toEqual([
      { path: "/workspace", sizeBytes: 512 * 1024 ** 2, readOnly: false },
      { path: "/tmp", sizeBytes: 64 * 1024 ** 2, readOnly: false },
      { path: "/scratch", sizeBytes: undefined, readOnly: true },
    ]);
    expect(limited).toEqual([
      { name: "workspace", path: "/workspace", limit: "256Mi", limitBytes: 256 * 1024 ** 2 },
    ]);
    expect(skipped).toEqual(["token"]);
  });

  it("evicts with the eviction manager's message, verbatim", () => {
    const [v] = emptyDirMounts(pod, c).limited;
    expect(emptyDirEvictionMessage(v!)).toBe(
      'Usage of EmptyDir volume "workspace" exceeds the limit "256Mi". ',
    );
  });
});
