import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { CoreV1Api, Exec, type V1Pod, type V1Status } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevCluster } from "../../devcluster/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";
import { waitFor } from "../support/wait-for.ts";

// pods/exec through the devcluster API server (which proxies to the process kubelet), driven
// with client-node's Exec, which picks v5.channel.k8s.io.
type DevCluster = Awaited<ReturnType<typeof startDevCluster>>;
const NS = "default";
const POD = "exec-target";
let cluster: DevCluster;
let core: CoreV1Api;
let exec: Exec;
let imageDir: string;
let dir: string;

function waitReady(name: string): Promise<V1Pod> {
  return waitFor(`${name} Ready`, async () => {
    const p = await core.readNamespacedPod({ name, namespace: NS });
    return p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" ? p : undefined;
  });
}

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  dir = await mkdtemp(join(tmpdir(), "devcluster-exec-api-"));
  cluster = await startDevCluster({
    dir,
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
  });
  core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  exec = new Exec(cluster.kubeConfig());
  await core.createNamespacedPod({ namespace: NS, body: healthPod(POD) });
  await waitReady(POD);
});

afterAll(async () => {
  await cluster?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

interface ExecOutcome {
  stdout: Buffer;
  stderr: Buffer;
  status: V1Status | undefined;
  /** How the socket ended: the close code, or undefined if it errored. */
  closeCode: number | undefined;
  protocol: string;
  exitCode: number | undefined;
}

class Collect extends Writable {
  readonly chunks: Buffer[] = [];
  readonly hash = createHash("sha256");
  bytes = 0;
  constructor(private readonly keep = true) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    if (this.keep) this.chunks.push(chunk);
    cb();
  }
}

function exitCodeOf(status: V1Status | undefined): number | undefined {
  if (!status) return undefined;
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  return cause?.message === undefined ? undefined : Number(cause.message);
}

/**
 * Runs a command with client-node and waits for the socket to close (not just for the status:
 * a socket that drops without one must still end the call). Always bounded by a timeout.
 */
async function run(
  command: string[],
  opts: { stdin?: Readable; pod?: string; timeoutMs?: number; keepStdout?: boolean } = {},
): Promise<ExecOutcome & { stdoutHash: string; stdoutBytes: number }> {
  const stdout = new Collect(opts.keepStdout ?? true);
  const stderr = new Collect();
  let status: V1Status | undefined;
  const ws = (await exec.exec(
    NS,
    opts.pod ?? POD,
    "main",
    command,
    stdout,
    stderr,
    opts.stdin ?? null,
    false,
    (s) => {
      status = s;
    },
  )) as unknown as WebSocketLike;
  const closeCode = await new Promise<number | undefined>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`exec ${JSON.stringify(command)} timed out`));
    }, opts.timeoutMs ?? 20_000);
    ws.on("close", (code: number) => {
      clearTimeout(timer);
      resolve(code);
    });
    ws.on("error", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  return {
    stdout: Buffer.concat(stdout.chunks),
    stderr: Buffer.concat(stderr.chunks),
    stdoutHash: stdout.hash.digest("hex"),
    stdoutBytes: stdout.bytes,
    status,
    closeCode,
    protocol: ws.protocol,
    exitCode: exitCodeOf(status),
  };
}

interface WebSocketLike {
  protocol: string;
  on(event: "close", cb: (code: number) => void): void;
  on(event: "error", cb: (err: Error) => void): void;
  close(): void;
  terminate(): void;
}

describe("pods/exec through the API server", () => {
  it("negotiates v5 and reports exit codes 0, 1 and 127 on the status channel", async () => {
    const ok = await run(["sh", "-c", "exit 0"]);
    expect(ok.protocol).toBe("v5.channel.k8s.io");
    expect(ok.status?.status).toBe("Success");
    expect(ok.exitCode).toBe(0);
    // client-node closes the socket itself (no code → 1005) as soon as it has the status; a
    // server-initiated close would be 1000.
    expect([1000, 1005]).toContain(ok.closeCode);

    const one = await run(["sh", "-c", "exit 1"]);
    expect(one.status?.status).toBe("Failure");
    expect(one.status?.reason).toBe("NonZeroExitCode");
    expect(one.exitCode).toBe(1);

    const missing = await run(["definitely-not-a-command"]);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr.toString()).toContain("definitely-not-a-command");
  });

  it("keeps stdout and stderr separate", async () => {
    const r = await run(["sh", "-c", "printf a; printf B >&2; printf c; printf D >&2"]);
    expect(r.stdout.toString()).toBe("ac");
    expect(r.stderr.toString()).toBe("BD");
    expect(r.exitCode).toBe(0);
  });

  it("delivers stdin and closes it with v5, so the command sees EOF and exits", async () => {
    const input = Buffer.alloc(200_001, "z");
    const r = await run(["wc", "-c"], {
      stdin: Readable.from([input.subarray(0, 100_000), input.subarray(100_000)]),
    });
    expect(r.stdout.toString().trim()).toBe(String(input.length));
    expect(r.exitCode).toBe(0);

    const cat = await run(["cat"], { stdin: Readable.from([Buffer.from("line one\nline two\n")]) });
    expect(cat.stdout.toString()).toBe("line one\nline two\n");
    expect(cat.exitCode).toBe(0);
  });

  it("runs inside the pod's sandbox: read-only root, writable /workspace and /tmp, uid 1000, no caps, no host processes", async () => {
    const r = await run([
      "sh",
      "-c",
      [
        "touch /etc/x 2>/dev/null && echo etc-writable || echo etc-ro",
        "touch /usr/x 2>/dev/null && echo usr-writable || echo usr-ro",
        "touch /x 2>/dev/null && echo root-writable || echo root-ro",
        "touch /dev/x 2>/dev/null && echo dev-writable || echo dev-ro",
        "touch /app/x 2>/dev/null && echo image-writable || echo image-ro",
        "echo hi > /workspace/f && echo ws-ok",
        "echo hi > /tmp/f && echo tmp-ok",
        "id -u",
        "grep CapEff /proc/self/status",
        "test -e /etc/shadow && echo shadow-visible || echo no-shadow",
        "ls /proc | grep -c '^[0-9]'",
      ].join("; "),
    ]);
    const lines = r.stdout.toString().trim().split("\n");
    expect(lines.slice(0, 8)).toEqual([
      "etc-ro",
      "usr-ro",
      "root-ro",
      "dev-ro",
      "image-ro",
      "ws-ok",
      "tmp-ok",
      "1000",
    ]);
    expect(lines[8]).toMatch(/^CapEff:\s+0+$/);
    expect(lines[9]).toBe("no-shadow");
    // The pod's own few processes (init, the server, this shell and its children), not the host's hundreds.
    expect(Number(lines[10])).toBeLessThan(10);
  });

  it("every process in the pod (its init, the server, the exec) runs as 1000 with no capabilities", async () => {
    const r = await run([
      "sh",
      "-c",
      "for s in /proc/[0-9]*/status; do echo $(grep -E '^(Name|Uid|CapEff|CapPrm):' $s | tr -s ' \\t' ' '); done",
    ]);
    // (A process that exited between the glob and its grep prints an empty line.)
    const procs = r.stdout
      .toString()
      .split("\n")
      .filter((l) => l.trim() !== "");
    expect(procs.some((l) => l.includes("Name: node"))).toBe(true);
    expect(procs.length).toBeGreaterThanOrEqual(3);
    for (const line of procs) {
      expect(line).toMatch(/Uid: 1000 1000 1000 1000/);
      expect(line).toMatch(/CapPrm: 0+ CapEff: 0+/);
    }
  });

  it("streams 50 MiB of output intact (length and hash)", async () => {
    const size = 50 * 1024 * 1024;
    // Random bytes, hashed inside the pod (through a FIFO, so nothing is stored) and on arrival.
    const script = `mkfifo /tmp/h; sha256sum < /tmp/h >&2 & head -c ${size} /dev/urandom | tee /tmp/h; wait; rm /tmp/h`;
    const r = await run(["sh", "-c", script], {
      keepStdout: false,
      timeoutMs: 60_000,
    });
    expect(r.stdoutBytes).toBe(size);
    expect(r.stderr.toString().split(" ")[0]).toBe(r.stdoutHash);
    expect(r.exitCode).toBe(0);
  }, 90_000);

  it("kills the command in the pod when the client disconnects", async () => {
    const marker = "sleep 91.75";
    const stdout = new Collect();
    const socket = (await exec.exec(
      NS,
      POD,
      "main",
      ["sh", "-c", `echo started; exec ${marker}`],
      stdout,
      null,
      null,
      false,
    )) as unknown as WebSocketLike;
    await waitFor("exec started", async () => (stdout.bytes > 0 ? true : undefined), 5000);
    socket.close();
    await waitFor(
      "command killed",
      async () => {
        const ps = await run(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]);
        return ps.stdout.toString().includes(marker) ? undefined : true;
      },
      5000,
    );
  });

  it("files written to /workspace and /tmp vanish with the pod", async () => {
    await core.createNamespacedPod({ namespace: NS, body: healthPod("scratch", { grace: 1 }) });
    await waitReady("scratch");
    const write = await run(
      [
        "sh",
        "-c",
        "echo keep > /workspace/left-behind && echo keep > /tmp/left-behind && ls /workspace /tmp",
      ],
      { pod: "scratch" },
    );
    expect(write.stdout.toString()).toBe("/tmp:\nleft-behind\n\n/workspace:\nleft-behind\n");
    await core.deleteNamespacedPod({ name: "scratch", namespace: NS });
    await waitFor("scratch deleted", async () =>
      core.readNamespacedPod({ name: "scratch", namespace: NS }).then(
        () => undefined,
        (err: { code?: number }) => (err.code === 404 ? true : undefined),
      ),
    );
    // Same name, fresh pod: nothing of the old one's files.
    await core.createNamespacedPod({ namespace: NS, body: healthPod("scratch", { grace: 1 }) });
    await waitReady("scratch");
    const look = await run(["sh", "-c", "ls -A /workspace /tmp"], { pod: "scratch" });
    expect(look.stdout.toString()).toBe("/tmp:\n\n/workspace:\n");
    await core.deleteNamespacedPod({ name: "scratch", namespace: NS, gracePeriodSeconds: 0 });
  });

  it("the pod deleted mid-exec ends the exec promptly: status 137 (SIGKILL), then close", async () => {
    await core.createNamespacedPod({ namespace: NS, body: healthPod("exec-victim", { grace: 1 }) });
    await waitReady("exec-victim");
    const pending = run(["sh", "-c", "echo started; sleep 600"], { pod: "exec-victim", timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 500));
    await core.deleteNamespacedPod({ name: "exec-victim", namespace: NS });
    const r = await pending;
    expect(r.stdout.toString()).toBe("started\n");
    // The exec'd process dies with the sandbox's PID namespace: SIGKILL, reported as 128+9.
    expect(r.exitCode).toBe(137);
  });

  it("a socket closed without a status frame ends the call (kubelet gone mid-exec)", async () => {
    // A second cluster, so stopping its kubelet does not disturb the others.
    const dir2 = await mkdtemp(join(tmpdir(), "devcluster-exec-api2-"));
    const c2 = await startDevCluster({
      dir: dir2,
      images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    });
    try {
      const core2 = c2.kubeConfig().makeApiClient(CoreV1Api);
      await core2.createNamespacedPod({ namespace: NS, body: healthPod("orphan") });
      await waitFor("orphan Ready", async () => {
        const p = await core2.readNamespacedPod({ name: "orphan", namespace: NS });
        return p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" ? p : undefined;
      });
      const exec2 = new Exec(c2.kubeConfig());
      const stdout = new Collect();
      let status: V1Status | undefined;
      const ws = (await exec2.exec(
        NS,
        "orphan",
        "main",
        ["sh", "-c", "echo started; sleep 600"],
        stdout,
        null,
        null,
        false,
        (s) => {
          status = s;
        },
      )) as unknown as WebSocketLike;
      const closed = new Promise<number | undefined>((resolve) => {
        ws.on("close", (code) => resolve(code));
        ws.on("error", () => resolve(undefined));
      });
      await waitFor("exec started", async () => (stdout.bytes > 0 ? true : undefined), 5000);
      await c2.kubelet.close();
      const code = await Promise.race([
        closed,
        new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000)),
      ]);
      // What we assert: the socket closes (no hang) and no status frame ever arrived, so a caller
      // must treat "closed without status" as a failure of its own (the close code is the proxy's choice).
      expect(code).not.toBe("timeout");
      expect(status).toBeUndefined();
    } finally {
      await c2.close();
      await rm(dir2, { recursive: true, force: true });
    }
  });
});
