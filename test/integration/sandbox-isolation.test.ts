// What a command inside a local sandbox can do, tried as an attacker would, through the real path
// (client-node → devcluster API server → TLS + client cert → kubelet → runc exec). Each check
// names the guard it depends on; removing that guard (in devcluster/kubelet/oci-spec.ts,
// seccomp.ts, port-forward.ts, container.ts; the exec server's execute-only node and SIGUSR1
// listener) makes it fail.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { Writable } from "node:stream";
import { CoreV1Api, Exec, type V1Pod, type V1Status } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { buildSandboxPod, loadPodTemplate } from "../../cluster-agent/pool/pod-template.ts";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";
import { ATTACK_SERVER, ATTACKS_FAIL } from "../support/tenant-residue.ts";
import { waitFor } from "../support/wait-for.ts";

const NS = "isolation";
const PIDS_LIMIT = 96;
let cluster: TestCluster;
let core: CoreV1Api;
let exec: Exec;
let hostListener: Server;
let hostPort: number;
const poolToken = randomBytes(16).toString("hex");

async function createPod(name: string, memory = "512Mi"): Promise<V1Pod> {
  const loaded = loadPodTemplate(undefined);
  if (!loaded.ok) throw loaded.error;
  const body = buildSandboxPod(loaded.value, {
    namespace: NS,
    name,
    execToken: podExecToken(poolToken, NS, name),
    image: loaded.value.spec?.containers[0]?.image ?? "pi-sandbox-runtime/sandbox:dev",
  });
  const c = body.spec?.containers[0];
  if (c?.resources?.limits) c.resources.limits.memory = memory;
  await core.createNamespacedPod({ namespace: NS, body });
  return waitFor(
    `${name} Ready`,
    async () => {
      const p = await core.readNamespacedPod({ name, namespace: NS });
      return p.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") ? p : undefined;
    },
    30_000,
  );
}

interface Ran {
  code: number | undefined;
  stdout: string;
  stderr: string;
  status: V1Status;
}

function sink(into: Buffer[]): Writable {
  return new Writable({
    write(c: Buffer, _e, done) {
      into.push(c);
      done();
    },
  });
}

/** `sh -c script` in the pod through pods/exec (the API server dials the kubelet over TLS). */
async function run(pod: string, script: string, timeoutMs = 20_000): Promise<Ran> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const status = await new Promise<V1Status>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`exec timed out: ${script}`)), timeoutMs);
    exec
      .exec(NS, pod, "sandbox", ["sh", "-c", script], sink(out), sink(err), null, false, (s) => {
        clearTimeout(t);
        resolve(s);
      })
      .catch((e: unknown) => {
        clearTimeout(t);
        reject(e);
      });
  });
  const n = Number(status.details?.causes?.find((c) => c.reason === "ExitCode")?.message);
  return {
    code: status.status === "Success" ? 0 : Number.isInteger(n) ? n : undefined,
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
    status,
  };
}

let a: V1Pod;
let b: V1Pod;

beforeAll(async () => {
  cluster = await startTestCluster({ namespaces: [NS], podPidsLimit: PIDS_LIMIT });
  core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  exec = new Exec(cluster.kubeConfig());
  hostListener = createServer((s) => s.end("host secret\n"));
  await new Promise<void>((r) => hostListener.listen(0, "127.0.0.1", () => r()));
  hostPort = (hostListener.address() as { port: number }).port;
  [a, b] = await Promise.all([createPod("iso-a"), createPod("iso-b")]);
}, 90_000);

afterAll(async () => {
  hostListener?.close();
  await cluster?.close();
});

describe("a local sandbox (runc)", () => {
  it("runs as uid 1000 inside, an unprivileged host uid range outside (never root, never a user's)", async () => {
    const r = await run("iso-a", "id -u; cat /proc/self/uid_map");
    const [uid, map] = r.stdout.trim().split("\n");
    expect(uid).toBe("1000");
    const [inside, host, size] = (map ?? "").trim().split(/\s+/).map(Number);
    expect(inside).toBe(0);
    expect(size).toBe(65_536);
    expect(host).toBeGreaterThanOrEqual(1_000_000_000);
    const users = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((l) => Number(l.split(":")[2]));
    expect(users.some((u) => u >= (host ?? 0) && u < (host ?? 0) + 65_536)).toBe(false);
    // Two pods never share a range.
    const other = await run("iso-b", "cat /proc/self/uid_map");
    expect(other.stdout.trim().split(/\s+/)[1]).not.toBe(String(host));
  });

  it("sees its own passwd and group (uid 1000 = sandbox), none of the host's accounts", async () => {
    const r = await run("iso-a", "id; getent passwd 1000; cat /etc/passwd /etc/group");
    const [id, entry, ...files] = r.stdout.trim().split("\n");
    expect(id).toMatch(/^uid=1000\(sandbox\) gid=1000\(sandbox\)/);
    expect(entry).toMatch(/^sandbox:x:1000:1000:/);
    // Every host account but root and nobody is invisible: no host user or group name appears.
    const hostNames = ["/etc/passwd", "/etc/group"].flatMap((f) =>
      readFileSync(f, "utf8")
        .split("\n")
        .map((l) => l.split(":")[0] ?? "")
        .filter((n) => n !== "" && !["root", "nobody", "nogroup", "sandbox"].includes(n)),
    );
    const inside = files.map((l) => l.split(":")[0]);
    expect(hostNames.filter((n) => inside.includes(n))).toEqual([]);
    // The files are the container's, read-only like its root.
    const w = await run("iso-a", "echo x >> /etc/passwd; echo rc=$?");
    expect(w.stdout).toContain("rc=");
    expect(w.stdout).not.toContain("rc=0");
  });

  it("cannot write host kernel settings: /proc/sys is read-only (readonlyPaths)", async () => {
    const r = await run(
      "iso-a",
      "echo 10 > /proc/sys/kernel/printk_ratelimit_burst; echo rc=$?; echo x > /proc/sys/kernel/core_pattern; echo rc=$?",
    );
    expect(r.stdout).toBe("rc=2\nrc=2\n");
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it("cannot create a nested user namespace (seccomp RuntimeDefault blocks unshare)", async () => {
    const r = await run(
      "iso-a",
      "unshare -U true; echo rc=$?; unshare -Urn true; echo rc=$?; grep ^Seccomp: /proc/self/status",
    );
    expect(r.stdout).toMatch(/^rc=1\nrc=1\nSeccomp:\s+2\n$/);
    expect(r.stderr).toMatch(/unshare failed: Operation not permitted/);
  });

  it("has only loopback: the API server, a host listener on 127.0.0.1 and another pod are unreachable", async () => {
    const apiPort = new URL(cluster.apiUrl).port;
    const probe = (host: string, port: string | number) =>
      `node -e 'const s=require("net").connect(${port},"${host}");s.setTimeout(2000,()=>{console.log("timeout");process.exit(0)});s.on("connect",()=>{console.log("connected");process.exit(0)});s.on("error",e=>{console.log(e.code);process.exit(0)})'`;
    const r = await run(
      "iso-a",
      [
        "ls /sys/class/net",
        probe("127.0.0.1", apiPort),
        probe("127.0.0.1", hostPort),
        probe(b.status?.podIP ?? "", 8080),
        probe("192.0.2.1", 80),
      ].join("; "),
    );
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe("lo");
    for (const l of lines.slice(1)) expect(l).not.toBe("connected");
    expect(lines.slice(1, 4)).toEqual(["ECONNREFUSED", "ECONNREFUSED", "ECONNREFUSED"]);
  });

  it("is reachable at its pod IP only through the kubelet, which holds the address", async () => {
    const ip = a.status?.podIP ?? "";
    const res = await fetch(`http://${ip}:8080/health`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    // No other process can take the pod's address:port (the kubelet bound it before the pod started).
    const squat = createServer();
    const e = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      squat.once("error", resolve);
      squat.listen(8080, ip, () => resolve(undefined));
    });
    squat.close();
    expect(e?.code).toBe("EADDRINUSE");
  });

  it("cannot run more processes than the pids limit; the host is unaffected", async () => {
    // The inner shell forks sleepers until fork fails (and then exits); the outer one counts them.
    const r = await run(
      "iso-a",
      `sh -c 'i=0; while [ $i -lt ${PIDS_LIMIT * 2} ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); done'; ` +
        `n=0; for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && n=$((n+1)) && kill -9 \${p#/proc/}; done; echo sleepers=$n`,
    );
    const sleepers = Number(/sleepers=(\d+)/.exec(r.stdout)?.[1]);
    expect(r.stderr).toMatch(/Cannot fork/);
    expect(sleepers).toBeGreaterThan(0);
    expect(sleepers).toBeLessThan(PIDS_LIMIT);
    // The pod still works once they are gone.
    expect((await run("iso-a", "echo ok")).stdout).toBe("ok\n");
  });

  it("cannot read, ptrace or open the inspector of the pod's exec server (same uid, not dumpable)", async () => {
    // The server runs from the image's execute-only node, so the kernel made it non-dumpable; its
    // SIGUSR1 listener keeps Node's inspector shut.
    const r = await run("iso-b", ATTACK_SERVER);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(ATTACKS_FAIL);
    const res = await fetch(`http://${b.status?.podIP}:8080/inspect`, {
      headers: { authorization: `Bearer ${podExecToken(poolToken, NS, "iso-b")}` },
      signal: AbortSignal.timeout(5000),
    });
    expect(await res.json()).toMatchObject({ serverExposed: false });
  });

  it("can write only where /reset clears: /workspace, /tmp, /dev/shm, /dev/mqueue", async () => {
    // Every mount point and every directory of the (read-only) root, tried with a real create.
    const r = await run(
      "iso-b",
      `for d in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u) $(find / -xdev -type d 2>/dev/null); do
         f="$d/.w$$"; if ( : > "$f" ) 2>/dev/null; then rm -f "$f"; echo "$d"; fi
       done | sort -u`,
    );
    expect(r.stdout.trim().split("\n")).toEqual(["/dev/mqueue", "/dev/shm", "/tmp", "/workspace"]);
  });

  it("runs in a cgroup below the kubelet's own, with the pod's cpu quota", async () => {
    const r = await run(
      "iso-a",
      "cat /proc/self/cgroup; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
    );
    // The cgroup namespace shows the container's own cgroup as its root.
    expect(r.stdout).toMatch(/memory:\/\n/);
    expect(r.stdout).toMatch(/\n(100000|100000 100000)\n$/);
  });
});

describe("memory limit", () => {
  it("an allocation of twice the limit is OOM-killed: the exec fails naming it, the pod is OOMKilled", async () => {
    await createPod("iso-oom", "128Mi");
    const r = await run(
      "iso-oom",
      `node -e 'const a=[]; for (let i = 0; i < 256; i++) a.push(Buffer.alloc(1 << 20, 1))'; echo survived`,
    );
    // The kubelet notices the OOM kill when the command ends (cgroup v1 has no memory.oom.group):
    // the shell may have printed "survived", but the caller is told the container was OOM-killed.
    expect(r.status.status).toBe("Failure");
    expect(r.status.message).toMatch(/OOMKilled/);
    const pod = await waitFor(
      "iso-oom terminated",
      async () => {
        const p = await core.readNamespacedPod({ name: "iso-oom", namespace: NS });
        return p.status?.containerStatuses?.[0]?.state?.terminated ? p : undefined;
      },
      20_000,
    );
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated?.reason).toBe("OOMKilled");
    expect(pod.status?.phase).toBe("Failed");
  });
});
