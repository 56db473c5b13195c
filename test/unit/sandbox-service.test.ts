/**
 * SandboxService on the pool-state seam: the in-memory PoolStore (API semantics of CAS, 404,
 * 409) and a fake clock for its keep-alive. The same service against devcluster is covered by
 * test/e2e/stack-sandboxes.test.ts.
 */
import type { V1Lease } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import { abortError, type SandboxFiles } from "../../cluster-agent/exec/executor.ts";
import { SANDBOX_ANNOTATIONS, sandboxHolder } from "../../cluster-agent/pool-state/sandbox-record.ts";
import { withSandbox } from "../../cluster-agent/sandboxes/exec.ts";
import { SandboxService, type SandboxServiceOptions } from "../../cluster-agent/sandboxes/service.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { FakeClock, flush, MemoryPoolStore } from "../support/memory-pool-store.ts";

const ID = "sb.local.default.aaaaaaaaaaaaaaaaaaaa";

function setup(extra: Partial<SandboxServiceOptions> = {}) {
  const store = new MemoryPoolStore();
  store.addPod("p0");
  const lease = store.leases.get("p0") as V1Lease;
  store.leases.observe({
    ...lease,
    metadata: {
      ...lease.metadata,
      annotations: {
        "pi-sandbox-runtime/tenant": "t1",
        [SANDBOX_ANNOTATIONS.id]: ID,
        [SANDBOX_ANNOTATIONS.createdAt]: new Date().toISOString(),
      },
    },
    spec: { ...lease.spec, holderIdentity: sandboxHolder("t1", ID), leaseDurationSeconds: 30 },
  });
  const warnings: Array<{ msg: string; requestId?: string; error?: string }> = [];
  const clock = new FakeClock();
  const service = new SandboxService({
    store,
    bus: new EventBus("agent-a"),
    log: { warn: (obj, msg) => void warnings.push({ msg, ...(obj as object) }) },
    clock,
    namespace: "ns",
    region: "local",
    cluster: "default",
    agentId: "agent-a",
    tenantMaxSandboxes: 8,
    acquire: async () => err(new AppError("internal", "not in this test")),
    detach: async () => undefined,
    ...extra,
  });
  return { store, service, clock, warnings };
}

/** A use that runs until its signal aborts (the sandbox went away); `reason` is why. */
function useUntilGone(service: SandboxService, requestId: string) {
  let why: AppError | undefined;
  const using = service.use(
    "t1",
    ID,
    { requestId, signal: new AbortController().signal, what: "sleep 60" },
    (use) =>
      new Promise<Result<void>>((resolve) => {
        use.signal.addEventListener("abort", () => {
          why = use.signal.reason instanceof AppError ? use.signal.reason : undefined;
          resolve(ok(undefined));
        });
      }),
  );
  return { using, reason: () => why };
}

describe("SandboxService.use", () => {
  it("a failed keep-alive is logged with the request id and, when the Lease then goes, reported as lease_lost", async () => {
    const { store, service, clock, warnings } = setup();
    const { using, reason } = useUntilGone(service, "req-7");
    await flush();
    // The keep-alive (every idle/3 = 10 s) fails: the API server refuses the write.
    store.failNext.set("p0", 500);
    await clock.advance(10_000);
    expect(warnings).toMatchObject([{ msg: "sandbox keep-alive failed", requestId: "req-7", pod: "p0" }]);
    // Not renewed, the Lease idle-expires and the controller deletes it.
    store.leases.forget("p0");
    await using;
    expect(reason()).toBeInstanceOf(AppError);
    expect(reason()?.code).toBe("lease_lost");
    expect(reason()?.message).toMatch(/renewing its Lease failed/);
  });

  it("a Lease deleted while in use (no failed keep-alive) is sandbox_not_found, as before", async () => {
    const { store, service } = setup();
    const { using, reason } = useUntilGone(service, "req-8");
    await flush();
    store.leases.forget("p0");
    await using;
    expect(reason()?.code).toBe("sandbox_not_found");
  });

  it("a renewal that loses its CAS and cannot re-read the Lease is sandbox_failed, not a gone sandbox", async () => {
    const { store, service } = setup();
    store.failNext.set("p0", 409);
    store.failNextRead.set("p0", 500);
    let ran = false;
    const r = await service.use(
      "t1",
      ID,
      { requestId: "req-11", signal: new AbortController().signal, what: "true" },
      async () => {
        ran = true;
        return ok(undefined);
      },
    );
    expect(ran).toBe(false);
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "sandbox_failed",
      expect.stringMatching(/could not read the Lease/),
    ]);
  });

  it("delete goes through the one delete path: Lease, then pod, attributed to the request", async () => {
    const { store, service } = setup();
    expect((await service.delete("t1", ID, "req-9")).ok).toBe(true);
    expect(store.writes.slice(-2).map((w) => w.what)).toEqual(["delete lease", "delete pod"]);
    expect(service.get("t1", ID).ok).toBe(false);
  });

  it("a delete whose Lease delete fails is logged with its request id and answered as a failure", async () => {
    const { store, service, warnings } = setup();
    store.failNextDelete.set("p0", 500);
    const r = await service.delete("t1", ID, "req-10");
    expect(!r.ok && r.error.code).toBe("sandbox_failed");
    expect(warnings).toMatchObject([{ msg: "delete lease failed; pod kept", requestId: "req-10" }]);
    expect(service.get("t1", ID).ok).toBe(true);
  });
});

describe("a sandbox's file calls through the pipeline (the /v1/sandboxes/:id/files path)", () => {
  const ctx = { tenant: "t1", requestId: "req-20", signal: new AbortController().signal, what: "read a" };
  const noExecutor = { mode: "http" as const, exec: async () => err(new AppError("internal", "unused")) };
  const files = (read: SandboxFiles["read"]): SandboxFiles => ({
    read,
    write: async () => ok({ path: "", size: 0 }),
    list: async () => ok({ entries: [], truncated: false }),
    remove: async () => ok(undefined),
  });

  it("a fence refusal from the pod is lease_lost, never stale_lease", async () => {
    const { service } = setup();
    const deps = {
      sandboxes: service,
      executor: noExecutor,
      bus: new EventBus("agent-a"),
      files: files(async () => err(new AppError("stale_lease", "fence 4 < 5"))),
    };
    const r = await withSandbox(deps, ID, ctx, (sb) => sb.readFile("a"));
    expect(!r.ok && r.error.code).toBe("lease_lost");
  });

  it("a file call running when the failed keep-alive lets the sandbox expire answers lease_lost", async () => {
    const { store, service, clock } = setup();
    let started: () => void = () => {};
    const running = new Promise<void>((r) => (started = r));
    const deps = {
      sandboxes: service,
      executor: noExecutor,
      bus: new EventBus("agent-a"),
      files: files(
        (_t, _p, o) =>
          new Promise((resolve) => {
            o.signal.addEventListener("abort", () => resolve(err(abortError(o.signal))));
            started();
          }),
      ),
    };
    const answer = withSandbox(deps, ID, ctx, (sb) => sb.readFile("big"));
    await running;
    store.failNext.set("p0", 500);
    await clock.advance(10_000);
    store.leases.forget("p0");
    const r = await answer;
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "lease_lost",
      expect.stringMatching(/renewing its Lease failed/),
    ]);
  });
});

describe("a sandbox's network policy on its Lease", () => {
  const PROXY_ENV = { HTTPS_PROXY: "http://10.0.0.7:3128", NODE_USE_ENV_PROXY: "1" };

  const withEgress = (egressEnv?: Record<string, string>) => setup(egressEnv ? { egressEnv } : {});
  /** The sandbox's Lease as the watch would deliver it with these annotations added. */
  const annotate = (store: MemoryPoolStore, extra: Record<string, string>) => {
    const lease = store.leases.get("p0") as V1Lease;
    store.leases.observe({
      ...lease,
      metadata: {
        ...lease.metadata,
        resourceVersion: "999",
        annotations: { ...lease.metadata?.annotations, ...extra },
      },
    });
  };

  it("is deny-all until set; a PUT writes it on the Lease and reads back", async () => {
    const { service, store } = withEgress(PROXY_ENV);
    expect(service.network("t1", ID)).toEqual(ok({ allow: [], deny: [] }));
    const set = await service.setNetwork("t1", ID, "r1", { allow: ["pkgs.test"] });
    expect(set).toEqual(ok({ allow: ["pkgs.test"], deny: [] }));
    expect(store.leases.get("p0")?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network]).toBe(
      '{"allow":["pkgs.test"],"deny":[]}',
    );
    expect(service.network("t1", ID)).toEqual(ok({ allow: ["pkgs.test"], deny: [] }));
    expect(service.network("t2", ID).ok).toBe(false);
    expect((await service.setNetwork("t2", ID, "r2", { allow: [] })).ok).toBe(false);
  });

  it("without a proxy (EGRESS=off) a policy that allows anything is refused, not ignored", async () => {
    const { service } = withEgress();
    const r = await service.setNetwork("t1", ID, "r1", { allow: ["pkgs.test"] });
    expect(r.ok || r.error.code).toBe("invalid_request");
    expect(r.ok || r.error.message).toMatch(/EGRESS=off/);
    expect((await service.setNetwork("t1", ID, "r1", { deny: ["10.0.0.0/8"] })).ok).toBe(true);
  });

  it("an unreadable stored policy reads as no network", () => {
    const { service, store } = withEgress(PROXY_ENV);
    annotate(store, { [SANDBOX_ANNOTATIONS.network]: '{"allow":"x"}' });
    expect(service.network("t1", ID)).toEqual(ok({ allow: [], deny: [] }));
  });

  it("every use gets the proxy variables under the sandbox's own env", async () => {
    const { service, store } = withEgress(PROXY_ENV);
    annotate(store, { [SANDBOX_ANNOTATIONS.env]: JSON.stringify({ HTTPS_PROXY: "mine", FOO: "bar" }) });
    const env = await service.use(
      "t1",
      ID,
      { requestId: "r1", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(env).toEqual(ok({ HTTPS_PROXY: "mine", NODE_USE_ENV_PROXY: "1", FOO: "bar" }));
    const off = withEgress();
    const none = await off.service.use(
      "t1",
      ID,
      { requestId: "r2", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(none).toEqual(ok(undefined));
  });
});
