/**
 * Issue 25 item 3: a sandbox whose pod was evicted or OOM-killed answers `sandbox_evicted` with the
 * kubelet's reason and message — on the call in flight and, within the memory's window, on later
 * calls (not `sandbox_not_found`). On the pool-state seam: the in-memory PoolStore and a fake clock.
 * Through the real stack: test/e2e/stack-sandboxes.test.ts.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { Executor } from "../../cluster-agent/exec/executor.ts";
import { LeaseManager } from "../../cluster-agent/leases/manager.ts";
import { PodEndings } from "../../cluster-agent/pool-state/pod-endings.ts";
import { podFailure } from "../../cluster-agent/pool-state/pod-failure.ts";
import { withLeasedSandbox } from "../../cluster-agent/requests/leased-sandbox.ts";
import { withSandbox } from "../../cluster-agent/sandboxes/exec.ts";
import type { SandboxService } from "../../cluster-agent/sandboxes/service.ts";
import type { ExecOutcome } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { FakeClock, flush, MemoryPoolStore } from "../support/memory-pool-store.ts";
import { sandboxServiceOn } from "../support/sandbox-service.ts";

const ID = "sb.local.default.bbbbbbbbbbbbbbbbbbbb";
const EVICTION = 'Usage of EmptyDir volume "workspace" exceeds the limit "256Mi". ';

function setup(opts: { endings?: boolean } = {}) {
  const store = new MemoryPoolStore();
  store.addSandbox("p0", "t1", ID, 300);
  const clock = new FakeClock();
  const endings = opts.endings === false ? undefined : new PodEndings(store, { clock });
  const service = sandboxServiceOn(store, clock, endings ? { endings } : {});
  return { store, service, clock };
}

/** What a kubelet writes when it evicts a pod (phase Failed, reason Evicted, its message). */
function evict(store: MemoryPoolStore, name: string): void {
  const pod = store.pods.get(name) as V1Pod;
  store.pods.observe({
    ...pod,
    status: { ...pod.status, phase: "Failed", reason: "Evicted", message: EVICTION },
  });
}

/** What a kubelet writes when the container was OOM-killed (restartPolicy Never: the pod fails). */
function oomKill(store: MemoryPoolStore, name: string): void {
  const pod = store.pods.get(name) as V1Pod;
  store.pods.observe({
    ...pod,
    spec: { containers: [{ name: "sandbox", resources: { limits: { memory: "512Mi" } } }] },
    status: {
      ...pod.status,
      phase: "Failed",
      containerStatuses: [
        {
          name: "sandbox",
          image: "",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 137, reason: "OOMKilled" } },
        },
      ],
    },
  });
}

/** The controller's recycle of a finished pod: Lease first, then the pod. */
function recycle(store: MemoryPoolStore, name: string): void {
  store.leases.forget(name);
  store.pods.forget(name);
}

/** An executor whose command runs until its signal aborts, or ends when `fail`/`finish` is called. */
function hangingExecutor() {
  let fail: (e: AppError) => void = () => {};
  let finish: (o: ExecOutcome) => void = () => {};
  const executor: Executor = {
    mode: "http",
    exec: (_lease, call) =>
      new Promise<Result<ExecOutcome>>((resolve) => {
        call.signal.addEventListener("abort", () =>
          resolve(err(new AppError("sandbox_failed", "the command was aborted"))),
        );
        fail = (e) => resolve(err(e));
        finish = (o) => resolve(ok(o));
      }),
  };
  return { executor, fail: (e: AppError) => fail(e), finish: (o: ExecOutcome) => finish(o) };
}

/** One command in the sandbox, through the pipeline (the /v1/sandboxes/:id/exec path). */
const runIn = (service: SandboxService, executor: Executor, command: string) =>
  withSandbox({ sandboxes: service, executor, bus: new EventBus("a") }, ID, ctx(), (sb) =>
    sb.run({ command, timeoutMs: 60_000 }),
  );

const ctx = () => ({
  tenant: "t1",
  requestId: "req-1",
  signal: new AbortController().signal,
  what: "sleep 60",
});

describe("podFailure reads what the kubelet wrote", () => {
  it("names an eviction, an OOM kill (also in lastState), and nothing for a healthy or merely deleted pod", () => {
    const store = new MemoryPoolStore();
    store.addPod("a");
    expect(podFailure(store.pods.get("a"))).toBeUndefined();
    evict(store, "a");
    expect(podFailure(store.pods.get("a"))).toEqual({ reason: "Evicted", message: EVICTION });
    store.addPod("b");
    oomKill(store, "b");
    expect(podFailure(store.pods.get("b"))).toEqual({
      reason: "OOMKilled",
      message: expect.stringMatching(/more memory than its limit \(512Mi\); exit code 137/),
    });
    const restarted: V1Pod = {
      status: {
        phase: "Running",
        containerStatuses: [
          {
            name: "c",
            image: "",
            imageID: "",
            ready: true,
            restartCount: 1,
            lastState: { terminated: { exitCode: 137, reason: "OOMKilled" } },
          },
        ],
      },
    };
    expect(podFailure(restarted)?.reason).toBe("OOMKilled");
    // Someone deleted it: its container's SIGTERM exit is no failure to explain.
    const deleted: V1Pod = {
      metadata: { deletionTimestamp: new Date() },
      status: {
        phase: "Failed",
        containerStatuses: [
          {
            name: "c",
            image: "",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 143, reason: "Error" } },
          },
        ],
      },
    };
    expect(podFailure(deleted)).toBeUndefined();
  });
});

describe("a sandbox whose pod was evicted", () => {
  it("the call in flight gets sandbox_evicted with the kubelet's message", async () => {
    const { store, service } = setup();
    const { executor } = hangingExecutor();
    const running = runIn(service, executor, "sleep 60");
    await flush();
    evict(store, "p0");
    const r = await running;
    expect(!r.ok && [r.error.code, r.error.status]).toEqual(["sandbox_evicted", 410]);
    expect(!r.ok && r.error.message).toContain(
      `sandbox ${ID} is gone: its pod p0 failed (Evicted): ${EVICTION}`,
    );
  });

  it("later calls get it too, after the controller recycled the pod, until the window passes", async () => {
    const { store, service, clock } = setup();
    evict(store, "p0");
    // Before the recycle: the pod is still there, Failed.
    const before = service.get("t1", ID);
    expect(!before.ok && before.error.code).toBe("sandbox_evicted");
    recycle(store, "p0");
    const got = service.get("t1", ID);
    expect(!got.ok && [got.error.code, got.error.message]).toEqual([
      "sandbox_evicted",
      expect.stringContaining(EVICTION),
    ]);
    const used = await service.use(
      "t1",
      ID,
      { requestId: "r2", signal: new AbortController().signal, what: "ls" },
      async () => {
        throw new Error("must not run");
      },
    );
    expect(!used.ok && used.error.code).toBe("sandbox_evicted");
    // Another tenant never learns of it.
    const other = service.get("t2", ID);
    expect(!other.ok && other.error.code).toBe("sandbox_not_found");
    // Deleting what is already gone succeeds (what the caller wants is so).
    expect((await service.delete("t1", ID, "r3")).ok).toBe(true);
    await clock.advance(9 * 60_000);
    expect(service.get("t1", ID).ok || (service.get("t1", ID) as { error: AppError }).error.code).toBe(
      "sandbox_evicted",
    );
    await clock.advance(2 * 60_000);
    const late = service.get("t1", ID);
    expect(!late.ok && late.error.code).toBe("sandbox_not_found");
  });

  it("the Lease's deletion seen before the pod's failure (no order between two watches) still names the sandbox", async () => {
    const { store, service } = setup();
    const pod = store.pods.get("p0") as V1Pod;
    store.leases.forget("p0");
    store.pods.observe({
      ...pod,
      status: { ...pod.status, phase: "Failed", reason: "Evicted", message: EVICTION },
    });
    store.pods.forget("p0");
    const got = service.get("t1", ID);
    expect(!got.ok && got.error.code).toBe("sandbox_evicted");
  });

  it("a new pod that comes under a failed pod's name is not taken for the failed one", () => {
    const store = new MemoryPoolStore();
    const endings = new PodEndings(store, { clock: new FakeClock() });
    store.pods.observe({
      metadata: { name: "p9", uid: "u1" },
      status: { phase: "Failed", reason: "Evicted", message: "x" },
    });
    store.pods.forget("p9");
    expect(endings.ofPod("p9")?.reason).toBe("Evicted");
    store.pods.observe({ metadata: { name: "p9", uid: "u2" }, status: { phase: "Running" } });
    expect(endings.ofPod("p9")).toBeUndefined();
  });

  it("without the memory (the fix) the next call is a bare sandbox_not_found", async () => {
    const { store, service } = setup({ endings: false });
    evict(store, "p0");
    recycle(store, "p0");
    const got = service.get("t1", ID);
    expect(!got.ok && got.error.code).toBe("sandbox_not_found");
  });
});

describe("an OOM kill", () => {
  it("a sandbox call that broke before the kubelet's status arrived waits for it and answers sandbox_evicted (OOMKilled)", async () => {
    const { store, service } = setup();
    const { executor, fail } = hangingExecutor();
    const running = runIn(service, executor, "python3 -c 'x = bytearray(1 << 30)'");
    await flush();
    // The container dies with the command: the exec server's connection breaks first...
    fail(new AppError("sandbox_failed", "exec server connection reset"));
    await flush();
    // ...and the status the kubelet writes arrives a moment later.
    oomKill(store, "p0");
    const r = await running;
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "sandbox_evicted",
      expect.stringMatching(/failed \(OOMKilled\): container "sandbox" was killed for using more memory/),
    ]);
  });

  it("a command the OOM killer SIGKILLed, answered before the container died, answers sandbox_evicted once the pod says so; a kill -9 on a healthy pod stays a result", async () => {
    const { store, service, clock } = setup();
    const killed: ExecOutcome = {
      exitCode: null,
      signal: "SIGKILL",
      stdout: "",
      stderr: "",
      stdoutBytes: 0,
      stderrBytes: 0,
      truncated: false,
      timedOut: false,
      durationMs: 10,
    };
    const healthy = hangingExecutor();
    const plain = runIn(service, healthy.executor, "kill -9 $$");
    await flush();
    healthy.finish(killed);
    await clock.advance(5_000);
    const r1 = await plain;
    expect(r1.ok && r1.value.signal).toBe("SIGKILL");
    const oom = hangingExecutor();
    const running = runIn(service, oom.executor, "node big.js");
    await flush();
    oom.finish({ ...killed, signal: null, exitCode: 137 });
    await flush();
    oomKill(store, "p0");
    const r2 = await running;
    expect(!r2.ok && r2.error.code).toBe("sandbox_evicted");
  });

  it("a broken call on a pod that stays healthy keeps its own error once the wait is over", async () => {
    const { service, clock } = setup();
    const { executor, fail } = hangingExecutor();
    const running = runIn(service, executor, "true");
    await flush();
    fail(new AppError("sandbox_failed", "exec server connection reset"));
    await clock.advance(5_000);
    const r = await running;
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
  });

  it("a one-shot /v1/exec lease (the lease manager's handle) answers sandbox_evicted too", async () => {
    const store = new MemoryPoolStore();
    store.addPod("p1");
    const clock = new FakeClock();
    const bus = new EventBus("agent-a");
    const manager = new LeaseManager({
      store,
      bus,
      log: { warn: () => {} },
      namespace: "ns",
      agentId: "agent-a",
      leaseTtlSeconds: 45,
      queueTimeoutSeconds: 15,
      tenantMaxLeases: 0,
      recycle: "replace",
      clock,
      endings: new PodEndings(store, { clock }),
    });
    const { executor, fail } = hangingExecutor();
    const running = withLeasedSandbox(
      { acquire: (signal) => manager.acquire({ tenant: "t1", requestId: "req-5", signal }), executor, bus },
      { tenant: "t1", requestId: "req-5", signal: new AbortController().signal },
      (sb) => sb.run({ command: "make -j64", timeoutMs: 60_000 }),
    );
    await flush();
    fail(new AppError("sandbox_failed", "socket closed without an exit status"));
    await flush();
    oomKill(store, "p1");
    const r = await running;
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "sandbox_evicted",
      expect.stringMatching(/^the pod p1 running this request failed \(OOMKilled\)/),
    ]);
    await manager.shutdown();
  });
});
