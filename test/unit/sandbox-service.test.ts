import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import { abortError, type SandboxFiles } from "../../cluster-agent/exec/executor.ts";
import type { LeaseHandle } from "../../cluster-agent/leases/types.ts";
import { SANDBOX_ANNOTATIONS } from "../../cluster-agent/pool-state/sandbox-record.ts";
import { SandboxEnvSeal } from "../../cluster-agent/sandboxes/env-seal.ts";
import { withSandbox } from "../../cluster-agent/sandboxes/exec.ts";
import {
  EGRESS_CA_BUNDLE_PATH,
  RENEW_AFTER_USE_MS,
  type SandboxService,
  type SandboxServiceOptions,
} from "../../cluster-agent/sandboxes/service.ts";
import type { SandboxCreateRequest } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { FakeClock, flush, MemoryPoolStore } from "../support/memory-pool-store.ts";
import { sandboxServiceOn } from "../support/sandbox-service.ts";

const ID = "sb.local.default.aaaaaaaaaaaaaaaaaaaa";

function setup(over: Partial<SandboxServiceOptions> = {}) {
  const store = new MemoryPoolStore();
  store.addSandbox("p0", "t1", ID, 30);
  const warnings: Array<{ msg: string; requestId?: string; error?: string; cause?: string }> = [];
  const clock = new FakeClock();
  const service = sandboxServiceOn(store, clock, {
    log: { warn: (obj, msg) => void warnings.push({ msg, ...(obj as object) }) },
    ...over,
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

/** One short use of the sandbox: its result, and whether the use's body ran at all. */
async function useOnce(service: SandboxService, requestId: string) {
  let ran = false;
  const r = await service.use(
    "t1",
    ID,
    { requestId, signal: new AbortController().signal, what: "true" },
    async () => {
      ran = true;
      return ok(undefined);
    },
  );
  return { r, ran };
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

  it("a use is renewed after it only when its last renewal is RENEW_AFTER_USE_MS old: a short call waits for one Lease write, not two", async () => {
    const { store, service, clock } = setup();
    const renewals = () => store.writes.filter((w) => w.what === "renew sandbox lease").length;
    const useFor = (ms: number) =>
      service.use(
        "t1",
        ID,
        { requestId: `r-${ms}`, signal: new AbortController().signal, what: "x" },
        async () => {
          await clock.advance(ms);
          return ok(undefined);
        },
      );
    // Shorter than the threshold: the renewal before it is the last one.
    expect((await useFor(RENEW_AFTER_USE_MS - 1)).ok).toBe(true);
    expect(renewals()).toBe(1);
    // As long as the threshold: renewed before and after.
    expect((await useFor(RENEW_AFTER_USE_MS)).ok).toBe(true);
    expect(renewals()).toBe(3);
    // A keep-alive (every third of the 30 s lease: 9,990 ms) within the threshold of the end counts.
    expect((await useFor(9_990 + RENEW_AFTER_USE_MS - 1)).ok).toBe(true);
    expect(renewals()).toBe(5);
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
    const { r, ran } = await useOnce(service, "req-11");
    expect(ran).toBe(false);
    expect(!r.ok && [r.error.code, r.error.message]).toEqual([
      "sandbox_failed",
      expect.stringMatching(/could not read the Lease/),
    ]);
  });

  it("a sandbox whose pod has no IP is sandbox_failed: nothing is run, nothing is sent to localhost", async () => {
    const { store, service, warnings } = setup();
    store.pods.observe({ metadata: { name: "p0" }, status: { phase: "Pending" } });
    const { r, ran } = await useOnce(service, "req-ip");
    expect(ran).toBe(false);
    expect(r.ok ? undefined : r.error.code).toBe("sandbox_failed");
    expect(warnings).toMatchObject([{ msg: "sandbox pod has no IP", requestId: "req-ip", pod: "p0" }]);
  });

  it("the API server's words never reach the caller: they are logged with the request id", async () => {
    const { store, service, warnings } = setup();
    const words = 'admission webhook "quota.corp-7.internal" denied the request: budget exceeded';
    store.failMessage = words;
    store.failNext.set("p0", 500);
    const { r } = await useOnce(service, "req-k8s");
    expect(r.ok ? undefined : r.error.code).toBe("sandbox_failed");
    expect(r.ok ? "" : JSON.stringify(r.error.toBody("req-k8s"))).not.toContain("corp-7");
    expect(warnings).toMatchObject([
      {
        msg: "sandbox renewal before a use failed",
        requestId: "req-k8s",
        cause: expect.stringContaining(words),
      },
    ]);
  });

  it("a reservation that fails on the API is logged with its cause and the request id", async () => {
    const words = 'namespaces "tenant-ns-9k" not found';
    const { service, warnings } = setup({
      reservations: {
        reserve: async () =>
          err(
            new AppError("sandbox_failed", "could not count the tenant's sandboxes", {
              cause: new Error(words),
            }),
          ),
        release: async () => ok(undefined),
      },
    });
    const r = await service.create(
      "t1",
      "req-res",
      { idleTimeoutSeconds: 300, maxLifetimeSeconds: 3600 },
      new AbortController().signal,
    );
    expect(r.ok ? "" : JSON.stringify(r.error.toBody("req-res"))).not.toContain("tenant-ns-9k");
    expect(warnings).toMatchObject([
      { msg: "reserving a sandbox place failed", requestId: "req-res", cause: words },
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

describe("a sandbox's env on its Lease", () => {
  const ENV = { API_KEY: "sk-live-7Hq2", DB_URL: "postgres://app:hunter2@db/prod" };

  /** The service with a free pool pod p1 that `acquire` hands out (the lease manager's part, minimal). */
  function withFreePod(envSeal?: SandboxEnvSeal, over: Partial<SandboxServiceOptions> = {}) {
    const t = setup({
      ...over,
      ...(envSeal ? { envSeal } : {}),
      acquire: async (req) => {
        const handle: LeaseHandle = {
          pod: "p1",
          podIP: "127.0.1.3",
          namespace: "ns",
          fence: 0,
          requestId: req.requestId,
          tenant: req.tenant,
          queueMs: 0,
          lost: new AbortController().signal,
          release: async () => undefined,
        };
        return ok(handle);
      },
      detach: async (pod) => t.store.leases.get(pod),
    });
    t.store.addPod("p1");
    return t;
  }
  const create = (service: SandboxService, env?: Record<string, string>) =>
    service.create(
      "t1",
      "req-env",
      { idleTimeoutSeconds: 300, maxLifetimeSeconds: 3600, ...(env ? { env } : {}) },
      new AbortController().signal,
    );

  it("is sealed: the annotation holds none of the values, and a use gets them back", async () => {
    const { service, store } = withFreePod(new SandboxEnvSeal("pool-token"));
    const made = await create(service, ENV);
    if (!made.ok) throw made.error;
    const stored = JSON.stringify(store.leases.get("p1")?.metadata?.annotations ?? {});
    expect(stored).toContain(SANDBOX_ANNOTATIONS.env);
    for (const v of Object.values(ENV)) expect(stored).not.toContain(v);
    const seen = await service.use(
      "t1",
      made.value.sandbox.id,
      { requestId: "req-use", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(seen).toEqual({ ok: true, value: ENV });
  });

  it("without the pool token's key a create with env is refused, never stored in plain text", async () => {
    const { service, store } = withFreePod();
    const made = await create(service, ENV);
    expect(made.ok ? "created" : made.error.code).toBe("invalid_request");
    expect(JSON.stringify(store.leases.get("p1"))).not.toContain("hunter2");
    expect((await create(service)).ok).toBe(true);
  });

  it("secrets: only with a proxy, only the tenant's own; a placeholder on the Lease and in every use's env", async () => {
    const withSecrets = (secrets: string[], service: SandboxService) =>
      service.create(
        "t1",
        "req-secrets",
        { idleTimeoutSeconds: 300, maxLifetimeSeconds: 3600, secrets },
        new AbortController().signal,
      );
    const off = withFreePod();
    const refused = await withSecrets(["API_KEY"], off.service);
    expect(refused.ok || [refused.error.code, refused.error.message]).toEqual([
      "invalid_request",
      expect.stringMatching(/EGRESS=off/),
    ]);
    const asked: string[] = [];
    const { service, store } = withFreePod(undefined, {
      egressEnv: { HTTPS_PROXY: "http://10.0.0.7:3128" },
      secrets: {
        missing: async (tenant, names) => {
          asked.push(tenant);
          return ok(names.filter((n) => n !== "API_KEY"));
        },
        env: (placeholders, file) => ({ SSL_CERT_FILE: file, ...Object.fromEntries(placeholders) }),
        placeholder: () => "pi-secret-fixed",
      },
    });
    const unknown = await withSecrets(["API_KEY", "OTHER"], service);
    expect(unknown.ok || [unknown.error.code, unknown.error.message]).toEqual([
      "secret_not_found",
      expect.stringContaining("OTHER"),
    ]);
    const made = await withSecrets(["API_KEY"], service);
    if (!made.ok) throw made.error;
    expect(asked).toEqual(["t1", "t1"]);
    expect(store.leases.get("p1")?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.secrets]).toBe(
      '{"API_KEY":"pi-secret-fixed"}',
    );
    const env = await service.use(
      "t1",
      made.value.sandbox.id,
      { requestId: "r1", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(env).toEqual(
      ok({
        HTTPS_PROXY: "http://10.0.0.7:3128",
        SSL_CERT_FILE: EGRESS_CA_BUNDLE_PATH,
        API_KEY: "pi-secret-fixed",
      }),
    );
  });

  it("get-or-create by name: the same network and secrets (any order) get it; others are 409, nothing changed", async () => {
    const { service, store } = withFreePod(undefined, {
      egressEnv: { HTTPS_PROXY: "http://10.0.0.7:3128" },
      secrets: {
        missing: async () => ok([]),
        env: () => ({}),
        placeholder: () => "pi-secret-fixed",
      },
    });
    const named = (extra: Partial<SandboxCreateRequest>, tenant = "t1") =>
      service.create(
        tenant,
        "req-named",
        { name: "work", idleTimeoutSeconds: 300, maxLifetimeSeconds: 3600, ...extra },
        new AbortController().signal,
      );
    const network = { allow: ["pkgs.test", "*.pythonhosted.org"], deny: ["10.0.0.0/8"] };
    const made = await named({ network, secrets: ["API_KEY"] });
    if (!made.ok) throw made.error;
    expect(made.value.created).toBe(true);
    const id = made.value.sandbox.id;
    const stored = store.leases.get("p1")?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network];

    for (const same of [
      {},
      { network: { allow: ["*.PythonHosted.org", "pkgs.test"], deny: ["10.0.0.0/8"] } },
      { secrets: ["API_KEY"] },
    ]) {
      const got = await named(same);
      expect(got.ok && [got.value.created, got.value.sandbox.id]).toEqual([false, id]);
    }
    for (const [other, what] of [
      [{ network: { allow: ["pkgs.test"] } }, "network"],
      [{ network: { ...network, deny: [] } }, "network"],
      [{ secrets: [] }, "secrets"],
      [{ network: { allow: [] }, secrets: ["API_KEY", "OTHER"] }, "network and secrets"],
    ] satisfies Array<[Partial<SandboxCreateRequest>, string]>) {
      const refused = await named(other);
      expect(refused.ok || [refused.error.code, refused.error.status]).toEqual([
        "sandbox_name_conflict",
        409,
      ]);
      expect(refused.ok || refused.error.message).toContain(`another ${what};`);
      expect(refused.ok || refused.error.message).toContain(`PUT /v1/sandboxes/${id}/network`);
    }
    expect(store.leases.get("p1")?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network]).toBe(stored);
    // What the sandbox's model is told: its policy and its placeholders' names; nothing for another tenant.
    expect(service.networkView("t1", id)).toEqual({ ...network, secrets: ["API_KEY"] });
    expect(service.networkView("t2", id)).toEqual({ allow: [], deny: [], secrets: [] });
    expect(service.networkView("t1", undefined)).toEqual({ allow: [], deny: [], secrets: [] });
  });
});

describe("a sandbox's network policy on its Lease", () => {
  const PROXY_ENV = { HTTPS_PROXY: "http://10.0.0.7:3128", NODE_USE_ENV_PROXY: "1" };

  const seal = new SandboxEnvSeal("pool-token");
  const withEgress = (egressEnv?: Record<string, string>) =>
    setup({ envSeal: seal, ...(egressEnv ? { egressEnv } : {}) });
  /** The sandbox's Lease as the watch would deliver it with these annotations added. */
  const annotate = (store: MemoryPoolStore, extra: Record<string, string>) => {
    const lease = store.leases.get("p0");
    if (!lease) throw new Error("no Lease p0");
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
    annotate(store, { [SANDBOX_ANNOTATIONS.env]: seal.seal({ HTTPS_PROXY: "mine", FOO: "bar" }, ID) });
    const env = await service.use(
      "t1",
      ID,
      { requestId: "r1", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(env).toEqual(ok({ HTTPS_PROXY: "mine", NODE_USE_ENV_PROXY: "1", FOO: "bar" }));
    const off = setup();
    const none = await off.service.use(
      "t1",
      ID,
      { requestId: "r2", signal: new AbortController().signal, what: "env" },
      async (use) => ok(use.env),
    );
    expect(none).toEqual(ok(undefined));
  });
});
