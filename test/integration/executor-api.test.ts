import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { ApiExecutor } from "../../cluster-agent/exec/api-executor.ts";
import type { ExecCall, ExecTarget, Executor } from "../../cluster-agent/exec/executor.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { type ExecOutcome, ExecOutcomeSchema } from "../../shared/api.ts";
import { AppError, type Result } from "../../shared/errors.ts";
import { type SandboxPodCluster, startSandboxPodCluster } from "../support/sandbox-pod.ts";

const call = (c: Partial<ExecCall> & { command: string }): ExecCall => ({
  timeoutMs: 10_000,
  signal: new AbortController().signal,
  ...c,
});

function value(r: Result<ExecOutcome>): ExecOutcome {
  if (!r.ok) throw new Error(`exec failed: ${r.error.code}: ${r.error.message}`);
  return r.value;
}

/** Everything but the wall time, which differs between any two runs. */
const comparable = (o: ExecOutcome) => ({ ...o, durationMs: typeof o.durationMs });

/** The same commands through both executors on one pod give the same outcomes. */
async function expectParity(http: Executor, api: Executor, target: ExecTarget): Promise<void> {
  const first = await http.exec(target, call({ command: "mkdir -p /workspace/sub" }));
  expect(value(first).exitCode).toBe(0);
  const calls: ExecCall[] = [
    call({ command: "echo hello" }),
    call({ command: "echo to-err >&2; exit 1" }),
    call({ command: "no-such-command-xyz" }),
    call({ command: "wc -c; cat", stdin: "some input\n" }),
    call({ command: "cat; echo no-stdin" }),
    call({ command: "cat; echo empty-stdin", stdin: "" }),
    call({ command: "head -c 3; echo; echo rest-unread", stdin: "abcdefgh" }),
    call({ command: "env | sort; id -u", env: { FOO: "a b'c\"$x", BAR: "" } }),
    call({ command: "pwd", cwd: "/workspace/sub" }),
    call({ command: "printf 'é%.0s' $(seq 1 10); exit 42" }),
  ];
  for (const c of calls) {
    const h = value(await http.exec(target, c));
    const a = value(await api.exec(target, c));
    expect(ExecOutcomeSchema.parse(a)).toEqual(a);
    expect(comparable(a), c.command).toEqual(comparable(h));
  }
}

// A kubelet before Kubernetes 1.29 offers only v4: no stdin half-close (client-node closes the
// whole socket when stdin ends there), so api mode sends stdin by length and never ends it.
describe("api executor against a kubelet that offers only the v4 exec protocol", () => {
  let cluster: SandboxPodCluster;
  let target: ExecTarget;
  beforeAll(async () => {
    cluster = await startSandboxPodCluster("exec-v4", { execProtocols: ["v4.channel.k8s.io"] });
    const { pod, podIP } = await cluster.createPod("exec-v4");
    target = { namespace: cluster.namespace, pod, podIP, fence: 1 };
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("gives the http executor's outcomes, stdin included; 1 MiB of stdin arrives whole", async () => {
    const api = new ApiExecutor({ kubeConfig: cluster.kubeConfig });
    await expectParity(new HttpExecutor({ poolToken: cluster.poolToken }), api, target);
    const big = "x".repeat(1024 * 1024);
    const r = value(await api.exec(target, call({ command: "wc -c", stdin: big })));
    expect(r.stdout.trim()).toBe(String(big.length));
  }, 60_000);
});

// Both executors against the same devcluster sandbox pod (real exec server, real pods/exec).
describe("api executor vs http executor on a devcluster sandbox pod", () => {
  let cluster: SandboxPodCluster;
  let api: ApiExecutor;
  let http: HttpExecutor;
  let target: ExecTarget;
  const both = (): Array<[string, Executor]> => [
    ["http", http],
    ["api", api],
  ];
  const inspect = async () => {
    const res = await fetch(`http://${target.podIP}:8080/inspect`, {
      headers: {
        authorization: `Bearer ${podExecToken(cluster.poolToken, target.namespace, target.pod)}`,
      },
      signal: AbortSignal.timeout(5000),
    });
    return (await res.json()) as { processes: number; workspaceEntries: number; tmpEntries: number };
  };
  /** Killed processes are reaped soon, but "soon" on a loaded machine can be seconds: poll up to 30 s. */
  const processesSettle = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const n = (await inspect()).processes;
      if (n === 0 || Date.now() > deadline) return n;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    cluster = await startSandboxPodCluster();
    const { pod, podIP } = await cluster.createPod("exec-parity");
    target = { namespace: cluster.namespace, pod, podIP, fence: 1 };
    api = new ApiExecutor({ kubeConfig: cluster.kubeConfig });
    http = new HttpExecutor({ poolToken: cluster.poolToken });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("gives identical outcomes for the same commands (exit codes 0, 1, 127; stderr; stdin; env; cwd)", async () => {
    await expectParity(http, api, target);
    const env = value(await api.exec(target, call({ command: "env" }))).stdout;
    expect(env).not.toContain(cluster.poolToken);
    expect(env).not.toContain(podExecToken(cluster.poolToken, target.namespace, target.pod));
    expect(env).not.toContain("POOL_TOKEN");
  });

  it("caps 10 MiB the same way in both modes", async () => {
    for (const [mode, ex] of both()) {
      const o = value(await ex.exec(target, call({ command: "head -c 10485760 /dev/zero" })));
      expect(o, mode).toMatchObject({ truncated: true, stdoutBytes: 10 * 1024 * 1024, exitCode: 0 });
      expect(o.stdout.length, mode).toBe(1024 * 1024);
    }
  });

  it("times out `sleep 100` after 1 s in both modes with the same result and no process left", async () => {
    for (const [mode, ex] of both()) {
      const t0 = Date.now();
      const o = value(await ex.exec(target, call({ command: "sleep 100 & sleep 100", timeoutMs: 1000 })));
      // The claim is "killed at the timeout, not after the 100 s sleep"; 30 s leaves a loaded machine room.
      expect(Date.now() - t0, mode).toBeLessThan(30_000);
      expect(o, mode).toMatchObject({ timedOut: true, exitCode: null, signal: "SIGKILL" });
      expect(await processesSettle(), mode).toBe(0);
    }
  });

  it("cleans up a fork of 500 processes on timeout in api mode too", async () => {
    // The claim needs the timeout to fire after all 500 are forked. How long forking takes is the
    // machine's business (1.75 s on an idle host, over 4 s in api mode on a loaded 2-core one), so
    // the timeout starts at 3 s and doubles until one run printed "forked" before it was killed.
    // Every attempt, finished fork or not, must time out and leave no process behind.
    for (let timeoutMs = 3000; ; timeoutMs *= 2) {
      const o = value(
        await api.exec(
          target,
          call({
            command: "i=0; while [ $i -lt 500 ]; do sleep 1000 & i=$((i+1)); done; echo forked; sleep 1000",
            timeoutMs,
          }),
        ),
      );
      expect(o, `timeout ${timeoutMs} ms`).toMatchObject({ timedOut: true, exitCode: null });
      expect(await processesSettle(), `timeout ${timeoutMs} ms`).toBe(0);
      if (o.stdout === "forked\n") break;
      expect(o.stdout, `timeout ${timeoutMs} ms`).toBe("");
      expect(timeoutMs, "500 forks did not finish within 48 s").toBeLessThan(48_000);
    }
  }, 180_000);

  it("leaves no background job behind in either mode", async () => {
    for (const [mode, ex] of both()) {
      const o = value(await ex.exec(target, call({ command: "sleep 1000 & echo started" })));
      expect(o.stdout, mode).toBe("started\n");
      expect(await processesSettle(), mode).toBe(0);
      expect((await inspect()).tmpEntries, mode).toBe(0);
    }
  });

  it("refuses a cwd outside /workspace in both modes", async () => {
    for (const [mode, ex] of both()) {
      for (const cwd of ["/etc", "/workspace/../etc", "/workspace/missing"]) {
        const r = await ex.exec(target, call({ command: "pwd", cwd }));
        expect(!r.ok && r.error.code, `${mode} ${cwd}`).toBe("invalid_request");
      }
    }
  });

  it("abort kills the command in the pod in both modes", async () => {
    for (const [mode, ex] of both()) {
      const ac = new AbortController();
      let sawOutput: () => void = () => {};
      const seen = new Promise<void>((r) => (sawOutput = r));
      const running = ex.exec(
        target,
        call({
          command: "echo go; sleep 1000",
          timeoutMs: 60_000,
          signal: ac.signal,
          onOutput: () => sawOutput(),
        }),
      );
      await seen;
      ac.abort(new AppError("lease_lost", "lease lost"));
      const r = await running;
      expect(!r.ok && r.error.code, mode).toBe("lease_lost");
      expect(await processesSettle(), mode).toBe(0);
    }
  });

  it("api mode survives a pod that disappears mid-command (error, not a hang)", async () => {
    const { pod, podIP } = await cluster.createPod("exec-doomed");
    const doomed = { namespace: cluster.namespace, pod, podIP, fence: 1 };
    const running = api.exec(doomed, call({ command: "sleep 1000", timeoutMs: 60_000 }));
    await new Promise((r) => setTimeout(r, 500));
    await cluster.deletePod(pod);
    const t0 = Date.now();
    const r = await running;
    expect(Date.now() - t0).toBeLessThan(15_000);
    // The kubelet's kill shows up either as a status for the killed process or as a dropped socket.
    if (r.ok) expect(r.value.exitCode).not.toBe(0);
    else expect(r.error.code).toBe("sandbox_failed");
  }, 30_000);
});

// The failure modes of a pods/exec socket, against a stand-in WebSocket endpoint.
describe("api executor against a misbehaving exec endpoint", () => {
  let wss: WebSocketServer;
  let behaviour: "close-without-status" | "silent" = "close-without-status";
  let kc: KubeConfig;
  const target: ExecTarget = { namespace: "ns", pod: "p", podIP: "127.0.0.1", fence: 1 };

  beforeAll(async () => {
    wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (p) => (p.has("v5.channel.k8s.io") ? "v5.channel.k8s.io" : false),
    });
    await new Promise<void>((r) => wss.once("listening", () => r()));
    wss.on("connection", (ws, req) => {
      const isKill = (req.url ?? "").includes("pi-kill");
      if (isKill) {
        ws.send(Buffer.from([3, ...Buffer.from('{"metadata":{},"status":"Success"}')]));
        ws.close(1000);
        return;
      }
      ws.send(Buffer.concat([Buffer.from([1]), Buffer.from("partial")]));
      if (behaviour === "close-without-status") setTimeout(() => ws.close(1000), 50);
    });
    const port = (wss.address() as AddressInfo).port;
    kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
  });
  afterAll(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
  });

  it("a socket that closes without a status is sandbox_failed at once", async () => {
    behaviour = "close-without-status";
    const ex = new ApiExecutor({ kubeConfig: kc });
    const t0 = Date.now();
    const r = await ex.exec(target, call({ command: "true", timeoutMs: 30_000 }));
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
    expect(!r.ok && r.error.message).toMatch(/without an exit status/);
  });

  it("a socket that stays open and silent times out after timeout + grace", async () => {
    behaviour = "silent";
    const ex = new ApiExecutor({ kubeConfig: kc, resultGraceMs: 300 });
    const t0 = Date.now();
    const r = await ex.exec(target, call({ command: "true", timeoutMs: 500 }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
  });

  it("an unreachable API server is sandbox_failed, not a hang", async () => {
    const dead = new KubeConfig();
    dead.loadFromOptions({
      clusters: [{ name: "c", server: "http://127.0.0.1:1", skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const r = await new ApiExecutor({ kubeConfig: dead }).exec(target, call({ command: "true" }));
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
  });
});
