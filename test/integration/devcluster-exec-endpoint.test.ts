import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Container, makeRuntimeDirs } from "../../devcluster/kubelet/container.ts";
import { type ExecServer, startExecServer } from "../../devcluster/kubelet/exec-server.ts";
import { IdRangeAllocator } from "../../devcluster/kubelet/id-ranges.ts";
import type { IdRange } from "../../devcluster/kubelet/oci-spec.ts";
import { makeKubeletPki } from "../../devcluster/pki.ts";
import { testKubeletClient, testKubeletTls } from "../support/devcluster.ts";
import { execQuery, exitCodeOf, rawExec, writeHealthServerImage } from "../support/kubelet-fixtures.ts";

// The kubelet's own exec endpoint, driven with a raw `ws` client (no API server in between):
// channel framing, client-certificate auth, exit codes, stdin, backpressure and cleanup.
let TLS: { cert: string; key: string; ca: string };
let server: ExecServer;
let sandbox: Container;
let runtime: Awaited<ReturnType<typeof makeRuntimeDirs>>;
const idRanges = new IdRangeAllocator();
let ids: IdRange;
let imageDir: string;
let logDir: string;
let base: string;

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  logDir = await mkdtemp(join(tmpdir(), "devcluster-exec-"));
  runtime = await makeRuntimeDirs();
  const range = idRanges.allocate();
  if (!range) throw new Error("no id range");
  ids = range;
  sandbox = new Container(
    `exec-endpoint-${process.pid}`,
    {
      hostname: "exec-pod",
      uid: 1000,
      gid: 1000,
      supplementalGids: [],
      readOnlyRoot: true,
      workingDir: "/workspace",
      binds: [{ host: imageDir, container: "/app" }],
      tmpfs: [{ path: "/workspace", sizeBytes: 8 << 20 }, { path: "/tmp" }],
      // The container's main process leaves a marker file and a recognisable process behind.
      argv: ["/bin/sh", "-c", "echo from-main > /workspace/marker; exec sleep 600"],
      env: { PATH: "/usr/bin:/bin", POD_VAR: "pod-env" },
      capabilities: [],
      limits: { pids: 256 },
    },
    ids,
    runtime,
    join(logDir, "main.log"),
  );
  expect(await sandbox.started()).toBeTypeOf("number");
  TLS = await testKubeletClient();
  server = await startExecServer({
    tls: await testKubeletTls(),
    scratchDir: runtime.root,
    log: () => {},
    lookup: (ns, pod, container) =>
      ns === "default" && pod === "exec-pod" && container === "main"
        ? { ok: true, sandbox }
        : { ok: false, message: `container not found ("${container}")` },
  });
  base = `wss://127.0.0.1:${server.port}/exec/default/exec-pod/main`;
});

afterAll(async () => {
  await server?.close();
  await sandbox?.stop(0);
  idRanges.releaseAll();
  await rm(runtime.root, { recursive: true, force: true });
  await rm(logDir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

const sh = (script: string, stdin = false) => `${base}?${execQuery(["sh", "-c", script], { stdin })}`;

describe("kubelet exec endpoint", () => {
  it("speaks TLS only and requires a client certificate of its CA (as kube-apiserver presents)", async () => {
    // Plain HTTP: the TLS server never answers it as HTTP.
    await expect(rawExec(sh("true").replace("wss://", "ws://"), { timeoutMs: 5000 })).rejects.toThrow();
    // TLS without a client certificate: the handshake is refused.
    await expect(rawExec(sh("true"), { tls: { ca: TLS.ca } })).rejects.toThrow();
    // A client certificate from another CA: refused too.
    const dir = await mkdtemp(join(tmpdir(), "foreign-pki-"));
    try {
      const foreign = await makeKubeletPki(dir, "x");
      await expect(
        rawExec(sh("true"), { tls: { cert: foreign.apiClientCert, key: foreign.apiClientKey, ca: TLS.ca } }),
      ).rejects.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const ok = await rawExec(sh("true"), { tls: TLS });
    expect(exitCodeOf(ok.status)).toBe(0);
  });

  it("prefers v5 and speaks v4 when that is all the client offers", async () => {
    const v5 = await rawExec(sh("true"), {
      tls: TLS,
      protocols: ["v4.channel.k8s.io", "v5.channel.k8s.io"],
    });
    expect(v5.protocol).toBe("v5.channel.k8s.io");
    const v4 = await rawExec(sh("echo hi"), { tls: TLS, protocols: ["v4.channel.k8s.io"] });
    expect(v4.protocol).toBe("v4.channel.k8s.io");
    expect(v4.stdout.toString()).toBe("hi\n");
    expect(v4.status).toEqual({ metadata: {}, status: "Success" });
  });

  it("reports exit codes 0, 1 and 127 on the status channel and closes with 1000", async () => {
    const ok = await rawExec(sh("exit 0"), { tls: TLS });
    expect(ok.status).toEqual({ metadata: {}, status: "Success" });
    expect(ok.closeCode).toBe(1000);
    const one = await rawExec(sh("exit 1"), { tls: TLS });
    expect(one.status?.status).toBe("Failure");
    expect(one.status?.reason).toBe("NonZeroExitCode");
    expect(exitCodeOf(one.status)).toBe(1);
    // A command that does not exist: 127, with the reason on stderr.
    const missing = await rawExec(`${base}?${execQuery(["no-such-command-xyz"])}`, { tls: TLS });
    expect(exitCodeOf(missing.status)).toBe(127);
    expect(missing.stderr.toString()).toContain("no-such-command-xyz");
  });

  it("keeps stdout and stderr apart", async () => {
    const r = await rawExec(sh("echo out; echo err >&2; echo out2"), { tls: TLS });
    expect(r.stdout.toString()).toBe("out\nout2\n");
    expect(r.stderr.toString()).toBe("err\n");
  });

  it("runs in the pod's sandbox: its files, its processes, uid 1000, no capabilities", async () => {
    const r = await rawExec(
      sh(
        "cat /workspace/marker; id -u; id -g; grep -E '^Cap(Eff|Prm|Inh|Amb)' /proc/self/status; " +
          "grep NoNewPrivs /proc/self/status; cat /proc/[0-9]*/cmdline | tr '\\0\\n' '  '; echo; hostname; echo $POD_VAR; pwd",
      ),
      { tls: TLS },
    );
    const lines = r.stdout.toString().split("\n");
    expect(lines[0]).toBe("from-main");
    expect(lines[1]).toBe("1000");
    expect(lines[2]).toBe("1000");
    for (const cap of lines.slice(3, 7)) expect(cap).toMatch(/^Cap\w+:\s+0+$/);
    expect(lines[7]).toMatch(/NoNewPrivs:\s+1/);
    // The pod's main process is visible to the exec'd one (same PID namespace) ...
    expect(lines[8]).toContain("sleep 600");
    // ... and nothing of the host (no vitest, no kubelet).
    expect(lines[8]).not.toContain("vitest");
    expect(lines.slice(9, 12)).toEqual(["exec-pod", "pod-env", "/workspace"]);
    expect(exitCodeOf(r.status)).toBe(0);
  });

  it("an exec'd process is visible to the pod's own processes", async () => {
    // Start a long exec with a unique argv, then look for it from a second exec via the pod's /proc.
    const first = rawExec(sh("exec sleep 31.5"), { tls: TLS, timeoutMs: 60_000 }).catch(() => undefined);
    // The first exec is running once its argv shows up; look until it does (a loaded machine may
    // take seconds to start it), so the assertion is about visibility, not start-up speed.
    let seen = "";
    for (const deadline = Date.now() + 30_000; !seen.includes("sleep 31.5") && Date.now() < deadline; ) {
      seen = (
        await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0\\n' '  '"), { tls: TLS })
      ).stdout.toString();
      if (!seen.includes("sleep 31.5")) await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen).toContain("sleep 31.5");
    await rawExec(`${base}?${execQuery(["pkill", "-x", "-f", "sleep 31.5"])}`, { tls: TLS });
    await first;
  });

  it("delivers stdin and closes it with v5 [255,0] so the command sees EOF", async () => {
    const payload = Buffer.alloc(300_000, "x");
    const r = await rawExec(sh("wc -c", true), {
      tls: TLS,
      onOpen: (ws) => {
        for (let i = 0; i < payload.length; i += 65_536) {
          ws.send(Buffer.concat([Buffer.from([0]), payload.subarray(i, i + 65_536)]));
        }
        ws.send(Buffer.from([255, 0]));
      },
    });
    expect(r.stdout.toString().trim()).toBe(String(payload.length));
    expect(exitCodeOf(r.status)).toBe(0);
  });

  it("finishes promptly when stdin is closed while its pipe is still full", async () => {
    // The command reads nothing for a while, so the kubelet's writes back up; the close
    // arrives meanwhile. The exec must still end with a status and a prompt close.
    const payload = Buffer.alloc(2 * 1024 * 1024, "y");
    const t0 = Date.now();
    const r = await rawExec(sh("sleep 1; wc -c", true), {
      tls: TLS,
      timeoutMs: 15_000,
      onOpen: (ws) => {
        ws.send(Buffer.concat([Buffer.from([0]), payload]));
        ws.send(Buffer.from([255, 0]));
      },
    });
    expect(r.stdout.toString().trim()).toBe(String(payload.length));
    expect(exitCodeOf(r.status)).toBe(0);
    expect(r.closeCode).toBe(1000);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("streams 50 MiB of output intact", async () => {
    const size = 50 * 1024 * 1024;
    const expected = createHash("sha256");
    // Deterministic, non-repeating-at-chunk-size content: the sequence 0..N as text.
    const script = `seq 1 20000000 | head -c ${size}`;
    const r = await rawExec(sh(script), { tls: TLS, timeoutMs: 60_000 });
    expect(r.stdout.length).toBe(size);
    // Rebuild the same bytes locally to compare hashes.
    let buf = "";
    let n = 1;
    let total = 0;
    while (total < size) {
      buf += `${n++}\n`;
      if (buf.length > 1 << 20) {
        const take = Math.min(buf.length, size - total);
        expected.update(buf.slice(0, take));
        total += take;
        buf = "";
      }
    }
    if (total < size) expected.update(buf.slice(0, size - total));
    expect(createHash("sha256").update(r.stdout).digest("hex")).toBe(expected.digest("hex"));
    expect(exitCodeOf(r.status)).toBe(0);
  }, 90_000);

  it("applies backpressure: a client that stops reading stalls the command instead of filling memory", async () => {
    const size = 50 * 1024 * 1024;
    let received = 0;
    let paused: (() => void) | undefined;
    const done = rawExec(sh(`head -c ${size} /dev/zero | cat; echo pipeline-done >&2`), {
      tls: TLS,
      timeoutMs: 60_000,
      onOpen: (ws) => {
        ws.on("message", (d: Buffer) => {
          received += d.length - 1;
          if (!paused && received > 1 << 20) {
            ws.pause();
            paused = () => ws.resume();
          }
        });
      },
    });
    await new Promise((r) => setTimeout(r, 300));
    while (!paused) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500));
    // While the client reads nothing, the producer must still be blocked on its pipe.
    const ps = await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0\\n' '  '"), { tls: TLS });
    expect(ps.stdout.toString()).toContain(`head -c ${size}`);
    const pausedAt = received;
    expect(pausedAt).toBeLessThan(size / 2);
    paused();
    const r = await done;
    expect(r.stdout.length).toBe(size);
    expect(r.stdout.every((b) => b === 0)).toBe(true);
    expect(r.stderr.toString()).toBe("pipeline-done\n");
    expect(exitCodeOf(r.status)).toBe(0);
  }, 90_000);

  it("kills the command in the pod when the client disconnects", async () => {
    await new Promise<void>((resolve, reject) => {
      rawExec(sh("echo started; exec sleep 77.25"), {
        tls: TLS,
        onOpen: (ws) => {
          ws.on("message", () => {
            ws.terminate();
            resolve();
          });
        },
      }).catch(reject);
    });
    const deadline = Date.now() + 5000;
    let listing = "";
    while (Date.now() < deadline) {
      const r = await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0\\n' '  '"), { tls: TLS });
      listing = r.stdout.toString();
      if (!listing.includes("sleep 77.25")) break;
      await new Promise((r2) => setTimeout(r2, 200));
    }
    expect(listing).not.toContain("sleep 77.25");
  });

  it("answers a container it does not run with a Failure status, not a crash", async () => {
    const r = await rawExec(
      `wss://127.0.0.1:${server.port}/exec/default/exec-pod/other?${execQuery(["true"])}`,
      {
        tls: TLS,
      },
    );
    expect(r.status?.status).toBe("Failure");
    expect(r.status?.message).toContain("container not found");
    expect(r.closeCode).toBe(1000);
  });
});
