import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExecServer, startExecServer } from "../../devcluster/kubelet/exec-server.ts";
import { Sandbox } from "../../devcluster/kubelet/sandbox.ts";
import { execQuery, exitCodeOf, rawExec, writeHealthServerImage } from "../support/kubelet-fixtures.ts";

// The kubelet's own exec endpoint, driven with a raw `ws` client (no API server in between):
// channel framing, auth, exit codes, stdin, backpressure and cleanup.
const TOKEN = "kubelet-test-token";
let server: ExecServer;
let sandbox: Sandbox;
let imageDir: string;
let logDir: string;
let base: string;

beforeAll(async () => {
  imageDir = await writeHealthServerImage();
  logDir = await mkdtemp(join(tmpdir(), "devcluster-exec-"));
  sandbox = new Sandbox(
    {
      hostname: "exec-pod",
      uid: 1000,
      gid: 1000,
      readOnlyRoot: true,
      workingDir: "/workspace",
      binds: [{ host: imageDir, container: "/app" }],
      tmpfs: [{ path: "/workspace", sizeBytes: 8 << 20 }, { path: "/tmp" }],
      // The container's main process leaves a marker file and a recognisable process behind.
      argv: ["/bin/sh", "-c", "echo from-main > /workspace/marker; exec sleep 600"],
    },
    { POD_VAR: "pod-env" },
    join(logDir, "main.log"),
  );
  expect(await sandbox.started()).toBeTypeOf("number");
  server = await startExecServer({
    token: TOKEN,
    log: () => {},
    lookup: (ns, pod, container) =>
      ns === "default" && pod === "exec-pod" && container === "main"
        ? { ok: true, sandbox }
        : { ok: false, message: `container not found ("${container}")` },
  });
  base = `ws://127.0.0.1:${server.port}/exec/default/exec-pod/main`;
});

afterAll(async () => {
  await server?.close();
  await sandbox?.stop(0);
  await rm(logDir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

const sh = (script: string, stdin = false) => `${base}?${execQuery(["sh", "-c", script], { stdin })}`;

describe("kubelet exec endpoint", () => {
  it("refuses a missing or wrong bearer token with 401", async () => {
    await expect(rawExec(sh("true"))).rejects.toMatchObject({ statusCode: 401 });
    await expect(rawExec(sh("true"), { token: "nope" })).rejects.toMatchObject({ statusCode: 401 });
  });

  it("prefers v5 and speaks v4 when that is all the client offers", async () => {
    const v5 = await rawExec(sh("true"), {
      token: TOKEN,
      protocols: ["v4.channel.k8s.io", "v5.channel.k8s.io"],
    });
    expect(v5.protocol).toBe("v5.channel.k8s.io");
    const v4 = await rawExec(sh("echo hi"), { token: TOKEN, protocols: ["v4.channel.k8s.io"] });
    expect(v4.protocol).toBe("v4.channel.k8s.io");
    expect(v4.stdout.toString()).toBe("hi\n");
    expect(v4.status).toEqual({ metadata: {}, status: "Success" });
  });

  it("reports exit codes 0, 1 and 127 on the status channel and closes with 1000", async () => {
    const ok = await rawExec(sh("exit 0"), { token: TOKEN });
    expect(ok.status).toEqual({ metadata: {}, status: "Success" });
    expect(ok.closeCode).toBe(1000);
    const one = await rawExec(sh("exit 1"), { token: TOKEN });
    expect(one.status?.status).toBe("Failure");
    expect(one.status?.reason).toBe("NonZeroExitCode");
    expect(exitCodeOf(one.status)).toBe(1);
    // A command that does not exist: 127, with the reason on stderr.
    const missing = await rawExec(`${base}?${execQuery(["no-such-command-xyz"])}`, { token: TOKEN });
    expect(exitCodeOf(missing.status)).toBe(127);
    expect(missing.stderr.toString()).toContain("no-such-command-xyz");
  });

  it("keeps stdout and stderr apart", async () => {
    const r = await rawExec(sh("echo out; echo err >&2; echo out2"), { token: TOKEN });
    expect(r.stdout.toString()).toBe("out\nout2\n");
    expect(r.stderr.toString()).toBe("err\n");
  });

  it("runs in the pod's sandbox: its files, its processes, uid 1000, no capabilities", async () => {
    const r = await rawExec(
      sh(
        "cat /workspace/marker; id -u; id -g; grep -E '^Cap(Eff|Prm|Inh|Amb)' /proc/self/status; " +
          "grep NoNewPrivs /proc/self/status; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; hostname; echo $POD_VAR; pwd",
      ),
      { token: TOKEN },
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
    const first = rawExec(sh("exec sleep 31.5"), { token: TOKEN, timeoutMs: 10_000 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    const seen = await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '"), { token: TOKEN });
    expect(seen.stdout.toString()).toContain("sleep 31.5");
    await rawExec(`${base}?${execQuery(["pkill", "-x", "-f", "sleep 31.5"])}`, { token: TOKEN });
    await first;
  });

  it("delivers stdin and closes it with v5 [255,0] so the command sees EOF", async () => {
    const payload = Buffer.alloc(300_000, "x");
    const r = await rawExec(sh("wc -c", true), {
      token: TOKEN,
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
      token: TOKEN,
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
    const r = await rawExec(sh(script), { token: TOKEN, timeoutMs: 60_000 });
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
      token: TOKEN,
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
    const ps = await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '"), { token: TOKEN });
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
        token: TOKEN,
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
      const r = await rawExec(sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '"), { token: TOKEN });
      listing = r.stdout.toString();
      if (!listing.includes("sleep 77.25")) break;
      await new Promise((r2) => setTimeout(r2, 200));
    }
    expect(listing).not.toContain("sleep 77.25");
  });

  it("answers a container it does not run with a Failure status, not a crash", async () => {
    const r = await rawExec(
      `ws://127.0.0.1:${server.port}/exec/default/exec-pod/other?${execQuery(["true"])}`,
      {
        token: TOKEN,
      },
    );
    expect(r.status?.status).toBe("Failure");
    expect(r.status?.message).toContain("container not found");
    expect(r.closeCode).toBe(1000);
  });
});
