import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { bwrapArgs, type SandboxSpec } from "../../devcluster/kubelet/bwrap-args.ts";
import { resolveEnv } from "../../devcluster/kubelet/env.ts";
import { imageRepository } from "../../devcluster/kubelet/image-ref.ts";
import { PodConditions } from "../../devcluster/kubelet/pod-status.ts";
import { probePort } from "../../devcluster/kubelet/probes.ts";
import { quantityBytes } from "../../devcluster/kubelet/quantity.ts";

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

describe("bwrapArgs", () => {
  const spec: SandboxSpec = {
    hostname: "pod-1",
    uid: 1000,
    gid: 1000,
    readOnlyRoot: true,
    workingDir: "/workspace",
    binds: [{ host: "/srv/image", container: "/opt/app" }],
    tmpfs: [{ path: "/workspace", sizeBytes: 1024 }, { path: "/tmp" }],
    argv: ["node", "/opt/app/server.mjs"],
  };
  const args = bwrapArgs(spec);
  const joined = args.join(" ");

  it("never binds all of /etc, and binds the image read-only", () => {
    expect(joined).not.toMatch(/--ro-bind(-try)? \/etc \/etc/);
    expect(joined).not.toContain("/etc/shadow");
    expect(joined).toContain("--ro-bind /srv/image /opt/app");
  });

  it("sizes emptyDir tmpfs mounts and leaves unsized ones unsized", () => {
    expect(joined).toContain("--size 1024 --tmpfs /workspace");
    expect(joined).toMatch(/--perms 1777 --tmpfs \/tmp/);
  });

  it("isolates: new user/pid/ipc/uts namespaces, uid/gid, no capabilities, dies with the kubelet", () => {
    for (const flag of [
      "--unshare-user",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--die-with-parent",
    ]) {
      expect(args).toContain(flag);
    }
    expect(joined).toContain("--uid 1000 --gid 1000");
    expect(joined).toContain("--cap-drop ALL");
    expect(args).not.toContain("--unshare-net"); // pods listen on 127.0.1.x of the host
  });

  it("remounts / read-only only for readOnlyRootFilesystem, after the mounts, and ends with the argv", () => {
    const remountRoot = (a: string[]) => a.findIndex((x, i) => x === "--remount-ro" && a[i + 1] === "/");
    expect(remountRoot(args)).toBeGreaterThan(args.indexOf("/workspace"));
    expect(remountRoot(args)).toBeGreaterThan(args.indexOf("/opt/app"));
    expect(remountRoot(bwrapArgs({ ...spec, readOnlyRoot: false }))).toBe(-1);
    expect(args.slice(-3)).toEqual(["--", "node", "/opt/app/server.mjs"]);
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
