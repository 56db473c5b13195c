import type { V1Lease } from "@kubernetes/client-node";
import type { Sandbox, SandboxCreateRequest, SandboxNetwork } from "../../shared/api.ts";
import { networkRefusal } from "../../shared/egress-policy.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { NetworkView } from "../../shared/tools/network-tool.ts";
import type { EventBus } from "../events/bus.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow, toMicroTime } from "../k8s/microtime.ts";
import type { AcquireRequest, LeaseHandle } from "../leases/types.ts";
import { type Clock, systemClock } from "../pool-state/clock.ts";
import { deletePodAndLease } from "../pool-state/delete-pod-and-lease.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { REQUEST_ID_ANNOTATION, TENANT_ANNOTATION } from "../pool-state/labels.ts";
import { holderOf, transitionsOf } from "../pool-state/lease-record.ts";
import { type PodEndings, podEndedError } from "../pool-state/pod-endings.ts";
import { podFailure } from "../pool-state/pod-failure.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import {
  isSandboxLease,
  mintSandboxId,
  networkAnnotation,
  SANDBOX_ANNOTATIONS,
  sandboxHolder,
  sandboxIdOf,
  sandboxNetworkOf,
  sandboxSecretsOf,
  sandboxView,
  sealedEnvOf,
} from "../pool-state/sandbox-record.ts";
import type { SandboxUse } from "../requests/sandbox-lease.ts";
import type { SandboxEnvSeal } from "./env-seal.ts";
import type { SandboxReservations } from "./tenant-reservations.ts";

export interface SandboxServiceOptions {
  /** The pool's Leases and pods (the watch-fed caches in production). */
  store: PoolStore;
  bus: EventBus;
  /** Where every error caught here and not returned is reported, with its request id. */
  log: FailureLog;
  /** Timers of the keep-alive (default: the real clock). */
  clock?: Clock;
  namespace: string;
  region: string;
  cluster: string;
  agentId: string;
  tenantMaxSandboxes: number;
  /**
   * The authoritative per-tenant count across replicas (tenant-reservations.ts): a create reserves
   * its id before it takes a pod. Without it only this replica's cache is counted, which creates in
   * flight escape.
   */
  reservations?: SandboxReservations;
  /** Seals each sandbox's default env for its Lease (from POOL_TOKEN); without it `env` is refused. */
  envSeal?: SandboxEnvSeal;
  acquire(req: AcquireRequest): Promise<Result<LeaseHandle>>;
  /** The lease manager's detach: stop renewing a lease we are about to hand to a sandbox. */
  detach(pod: string): Promise<V1Lease | undefined>;
  /**
   * Pods that failed (evicted, OOM-killed) and whose sandboxes they held, remembered for a while:
   * a call on such a sandbox gets `sandbox_evicted` with the kubelet's reason, not `sandbox_not_found`.
   */
  endings?: PodEndings;
  requestTimeoutMs?: number;
  /**
   * The environment that points a sandbox's tools at the egress proxy (egress/sandbox-env.ts),
   * put under the sandbox's default env of every command. Absent: this deployment runs no proxy,
   * sandboxes have no network, and a policy that allows anything is refused as unenforceable.
   */
  egressEnv?: Readonly<Record<string, string>>;
  /** EGRESS_ALLOW_ANY_HOST: may a policy allow every destination? Default no. */
  allowAnyHost?: boolean;
  /**
   * Secrets a sandbox may opt in to (`secrets` on create): which names the tenant has, and the env
   * that shows the sandbox their placeholders and points its tools at the CA bundle. Absent: no
   * egress proxy with a CA here, and `secrets` is refused.
   */
  secrets?: {
    missing(tenant: string, names: readonly string[]): Promise<Result<string[]>>;
    env(placeholders: ReadonlyMap<string, string>, caBundleFile: string): Record<string, string>;
    /** A new random placeholder (egress/secrets.ts newPlaceholder). */
    placeholder(): string;
  };
}

/**
 * Where a sandbox that uses secrets finds the CA bundle (public roots + the cluster's egress CA):
 * written into its pod by the agent when it is created (routes.ts), read by the tools through
 * SSL_CERT_FILE and the other CA variables. Under the workspace: the one place the agent writes.
 */
export const EGRESS_CA_BUNDLE_PATH = "/workspace/.pi-egress/ca-bundle.pem";

type SandboxInfo = NonNullable<ReturnType<typeof sandboxView>>;

const notFound = (id: string) => new AppError("sandbox_not_found", `no sandbox ${id}`);
/** Longest command preview kept on the Lease (annotations share a 256 KiB budget). */
const LAST_COMMAND_CHARS = 200;
/** Serialized default env kept on the Lease at most. */
const MAX_ENV_JSON_BYTES = 64 * 1024;

/**
 * A use is renewed again when it ends only if its last renewal is at least this old: the sandbox
 * then expires at most this much before a full idle timeout after its last use ends.
 */
export const RENEW_AFTER_USE_MS = 1000;

/**
 * Sandboxes that live across requests (see record.ts for how a sandbox lives on its Lease).
 * Stateless per replica: every answer comes from the watch-fed Lease cache and every change is a
 * compare-and-swap on the Lease, so any replica serves any sandbox and a replica's loss loses none.
 */
export class SandboxService {
  private readonly timeoutMs: number;
  private readonly clock: Clock;

  constructor(private readonly o: SandboxServiceOptions) {
    this.timeoutMs = o.requestTimeoutMs ?? 5_000;
    this.clock = o.clock ?? systemClock;
  }

  list(tenant: string, name?: string): Sandbox[] {
    return this.live(tenant)
      .filter((s) => name === undefined || s.name === name)
      .map(publicView);
  }

  /** Every live sandbox of the pool, with its tenant and last command (dashboard). */
  all(): SandboxInfo[] {
    const out: SandboxInfo[] = [];
    for (const l of this.o.store.leases.list()) {
      const v = sandboxView(l, this.o.region);
      if (v) out.push(v);
    }
    return out;
  }

  get(tenant: string, id: string): Result<Sandbox> {
    const found = this.find(tenant, id);
    const ended = this.ended(tenant, id, found?.view.pod);
    if (ended) return err(ended);
    return found ? ok(publicView(found.view)) : err(notFound(id));
  }

  async create(
    tenant: string,
    requestId: string,
    req: SandboxCreateRequest,
    signal: AbortSignal,
  ): Promise<Result<{ sandbox: Sandbox; created: boolean }>> {
    if (req.name !== undefined) {
      const existing = this.byName(tenant, req.name);
      if (existing) return this.gotByName(tenant, existing, req);
    }
    const envJson = req.env ? JSON.stringify(req.env) : undefined;
    if (envJson !== undefined && new TextEncoder().encode(envJson).length > MAX_ENV_JSON_BYTES) {
      return err(new AppError("invalid_request", `env: at most ${MAX_ENV_JSON_BYTES} bytes as JSON`));
    }
    const unenforceable = this.unenforceable(req.network);
    if (unenforceable) return err(unenforceable);
    const secretsRefused = await this.checkSecrets(tenant, req.secrets ?? []);
    if (secretsRefused) return err(secretsRefused);
    if (req.env && !this.o.envSeal) {
      // Never stored in plain text: without the key there is nowhere safe to keep it.
      return err(
        new AppError("invalid_request", "env: this agent cannot store a sandbox env (it has no POOL_TOKEN)"),
      );
    }
    if (this.live(tenant).length >= this.o.tenantMaxSandboxes) {
      return err(
        new AppError(
          "sandbox_limit",
          `tenant already has ${this.o.tenantMaxSandboxes} sandboxes (TENANT_MAX_SANDBOXES)`,
        ),
      );
    }
    const id = mintSandboxId(this.o.region, this.o.cluster);
    const reserved = await this.o.reservations?.reserve(tenant, id);
    if (reserved && !reserved.ok) {
      if (reserved.error.code !== "sandbox_limit")
        logFailure(this.o.log, "reserving a sandbox place failed", reserved.error, { requestId });
      return reserved;
    }
    const sealedEnv = req.env ? this.o.envSeal?.seal(req.env, id) : undefined;
    const made = await this.createReserved(tenant, requestId, req, signal, id, sealedEnv);
    // Every path that made no sandbox gives its place back (a missed release heals after a grace).
    if (!made.ok || !made.value.created) await this.release(tenant, id, requestId);
    return made;
  }

  private async createReserved(
    tenant: string,
    requestId: string,
    req: SandboxCreateRequest,
    signal: AbortSignal,
    id: string,
    sealedEnv: string | undefined,
  ): Promise<Result<{ sandbox: Sandbox; created: boolean }>> {
    const lease = await this.o.acquire({ tenant, requestId, signal });
    if (!lease.ok) return lease;
    const handle = lease.value;
    const detached = await this.o.detach(handle.pod);
    if (!detached) {
      await handle.release();
      return err(
        new AppError("lease_lost", `the lease on ${handle.pod} was lost before the sandbox took it`),
      );
    }
    const now = new Date();
    const annotations: Record<string, string> = {
      [TENANT_ANNOTATION]: tenant,
      [REQUEST_ID_ANNOTATION]: requestId,
      [SANDBOX_ANNOTATIONS.id]: id,
      [SANDBOX_ANNOTATIONS.createdAt]: now.toISOString(),
      [SANDBOX_ANNOTATIONS.lifetimeEndsAt]: new Date(
        now.getTime() + req.maxLifetimeSeconds * 1000,
      ).toISOString(),
      [SANDBOX_ANNOTATIONS.maxLifetimeSeconds]: String(req.maxLifetimeSeconds),
      ...(req.name !== undefined ? { [SANDBOX_ANNOTATIONS.name]: req.name } : {}),
      ...(sealedEnv !== undefined ? { [SANDBOX_ANNOTATIONS.env]: sealedEnv } : {}),
      ...(req.network !== undefined ? { [SANDBOX_ANNOTATIONS.network]: networkAnnotation(req.network) } : {}),
      ...(req.secrets?.length
        ? {
            [SANDBOX_ANNOTATIONS.secrets]: JSON.stringify(
              Object.fromEntries(req.secrets.map((n) => [n, this.o.secrets?.placeholder() ?? ""])),
            ),
          }
        : {}),
    };
    const body: V1Lease = {
      ...detached,
      metadata: {
        ...detached.metadata,
        annotations: { ...(detached.metadata?.annotations ?? {}), ...annotations },
      },
      spec: {
        ...detached.spec,
        holderIdentity: sandboxHolder(tenant, id),
        acquireTime: microNow(now),
        renewTime: microNow(now),
        leaseDurationSeconds: req.idleTimeoutSeconds,
        // A new holder: the fence moves on, so nothing fenced by the creating request can touch it.
        leaseTransitions: transitionsOf(detached) + 1,
      },
    };
    let adopted: V1Lease;
    try {
      adopted = await this.o.store.replaceLease(body, this.timeoutMs, "adopt lease for sandbox");
    } catch (e) {
      // Nobody else may have written it (we held it); whatever happened, the pod is not usable now.
      logFailure(this.o.log, "sandbox adoption failed; deleting its pod", e, { requestId, pod: handle.pod });
      await this.deletePodAndLease(handle.pod, { requestId, tenant, reason: "sandbox adoption failed" });
      // What the API server said is in the log line above, not in the answer.
      return err(new AppError("sandbox_failed", `could not hand ${handle.pod} to the sandbox`));
    }
    const view = sandboxView(adopted, this.o.region) as SandboxInfo;
    this.o.bus.emit({
      type: "sandbox.created",
      requestId,
      tenant,
      pod: handle.pod,
      data: {
        sandboxId: id,
        name: req.name ?? null,
        idleTimeoutSeconds: req.idleTimeoutSeconds,
        expiresAt: view.expiresAt,
      },
    });
    if (req.name !== undefined) {
      // Two replicas may have raced on one name: the oldest sandbox wins, the others are deleted.
      const winner = this.byName(tenant, req.name);
      if (winner && winner.id !== id) {
        await this.deletePodAndLease(handle.pod, { requestId, tenant, reason: "lost a get-or-create race" });
        return this.gotByName(tenant, winner, req);
      }
    }
    return ok({ sandbox: publicView(view), created: true });
  }

  async delete(tenant: string, id: string, requestId: string): Promise<Result<void>> {
    const found = this.find(tenant, id);
    // Its pod failed and the controller recycled it: what the caller wants is already so.
    if (!found && this.ended(tenant, id)) {
      await this.release(tenant, id, requestId);
      return ok(undefined);
    }
    if (!found) return err(notFound(id));
    const done = await this.deletePodAndLease(found.view.pod, {
      requestId,
      tenant,
      reason: "sandbox deleted",
    });
    // Its Lease still there: the sandbox still exists. (A pod left behind without it is the
    // controller's orphan; the sandbox is gone.)
    if (!done && this.find(tenant, id)) {
      return err(new AppError("sandbox_failed", `could not delete sandbox ${id}; try again`));
    }
    this.o.bus.emit({
      type: "sandbox.deleted",
      requestId,
      tenant,
      pod: found.view.pod,
      data: { sandboxId: id },
    });
    await this.release(tenant, id, requestId);
    return ok(undefined);
  }

  /** The sandbox's network policy (empty allow: no network). */
  network(tenant: string, id: string): Result<SandboxNetwork> {
    const found = this.find(tenant, id);
    if (!found) return err(notFound(id));
    // An annotation the agent cannot read is enforced as no network: say so rather than guess.
    return ok(sandboxNetworkOf(found.lease) ?? { allow: [], deny: [] });
  }

  /**
   * What a model working in the sandbox is told about its network: the policy and the names of the
   * secrets it holds placeholders for (never a value). An unknown id (not created yet): no network.
   */
  networkView(tenant: string, id: string | undefined): NetworkView {
    const found = id === undefined ? undefined : this.find(tenant, id);
    if (!found) return { allow: [], deny: [], secrets: [] };
    const policy = sandboxNetworkOf(found.lease) ?? { allow: [], deny: [] };
    return { ...policy, secrets: [...sandboxSecretsOf(found.lease).keys()].sort() };
  }

  /**
   * Replaces the sandbox's network policy (a CAS on its Lease, like any use). Every replica's
   * proxy sees the new Lease through its watch and closes what the policy no longer allows.
   */
  async setNetwork(
    tenant: string,
    id: string,
    requestId: string,
    network: { allow?: string[]; deny?: string[] },
  ): Promise<Result<SandboxNetwork>> {
    const unenforceable = this.unenforceable(network, "");
    if (unenforceable) return err(unenforceable);
    const found = this.find(tenant, id);
    if (!found) return err(notFound(id));
    const written = await this.touch(
      tenant,
      id,
      found.view.pod,
      { [SANDBOX_ANNOTATIONS.network]: networkAnnotation(network) },
      true,
    );
    if (!written.ok) return written;
    this.o.bus.emit({
      type: "sandbox.used",
      requestId,
      tenant,
      pod: found.view.pod,
      data: { sandboxId: id, what: "set network policy" },
    });
    return ok(sandboxNetworkOf(written.value) ?? { allow: [], deny: [] });
  }

  /** Secrets named on create: only where a proxy can add them, and only the tenant's own. */
  private async checkSecrets(tenant: string, names: readonly string[]): Promise<AppError | undefined> {
    if (names.length === 0) return undefined;
    if (!this.o.secrets)
      return new AppError(
        "invalid_request",
        "secrets: this deployment runs no egress proxy (EGRESS=off), so no secret can be added to requests",
      );
    const missing = await this.o.secrets.missing(tenant, names);
    if (!missing.ok) return missing.error;
    return missing.value.length > 0
      ? new AppError(
          "secret_not_found",
          `no secret ${missing.value.join(", ")} (PUT /v1/secrets/:name first)`,
        )
      : undefined;
  }

  /**
   * A policy this deployment cannot take: one that opens something where no proxy runs (refused
   * rather than silently ignored), or every destination unless EGRESS_ALLOW_ANY_HOST.
   */
  private unenforceable(network: { allow?: string[] } | undefined, path?: string): AppError | undefined {
    const why = networkRefusal(
      network,
      { proxy: this.o.egressEnv !== undefined, allowAnyHost: this.o.allowAnyHost ?? false },
      path,
    );
    return why === undefined ? undefined : new AppError("invalid_request", why);
  }

  /** The tenant's sandbox Lease as cached (sandbox_evicted / sandbox_not_found otherwise). */
  leaseOf(tenant: string, id: string): Result<V1Lease> {
    const found = this.find(tenant, id);
    if (found) return ok(found.lease);
    return err(this.ended(tenant, id) ?? notFound(id));
  }

  /**
   * The tenant's sandbox Lease as the API server has it now (not the cache): for a change another
   * replica wrote a moment ago that this replica's watch has not delivered yet.
   */
  async leaseNow(tenant: string, id: string): Promise<Result<V1Lease>> {
    const found = this.find(tenant, id);
    if (!found) return err(this.ended(tenant, id) ?? notFound(id));
    const now = await this.reread(found.view.pod, id);
    if (!now.ok) return now;
    const view = sandboxView(now.value, this.o.region);
    return view &&
      view.tenant === tenant &&
      holderOf(now.value) === sandboxHolder(tenant, id) &&
      sandboxIdOf(now.value) === id
      ? now
      : err(notFound(id));
  }

  /**
   * Change annotations of the tenant's sandbox by CAS: `change` is computed from the Lease as it
   * is at each attempt (a concurrent change is never lost) and may refuse with an error.
   */
  async annotate(
    tenant: string,
    id: string,
    requestId: string,
    what: string,
    change: (lease: V1Lease) => Result<Record<string, string>>,
  ): Promise<Result<V1Lease>> {
    const found = this.find(tenant, id);
    if (!found) return err(notFound(id));
    const written = await this.touch(tenant, id, found.view.pod, change, true);
    if (written.ok) {
      this.o.bus.emit({
        type: "sandbox.used",
        requestId,
        tenant,
        pod: found.view.pod,
        data: { sandboxId: id, what },
      });
    }
    return written;
  }

  /** Whether the tenant's sandbox exists in the Lease cache (the reservations' staleness test). */
  has(tenant: string, id: string): boolean {
    return this.find(tenant, id) !== undefined;
  }

  private async release(tenant: string, id: string, requestId: string): Promise<void> {
    const r = await this.o.reservations?.release(tenant, id);
    if (r && !r.ok)
      logFailure(this.o.log, "releasing a sandbox reservation failed; it heals after its grace", r.error, {
        requestId,
      });
  }

  /**
   * Run `fn` in the sandbox: renew its Lease (activity) before, every third of the idle timeout
   * while it runs (a long command keeps its sandbox), and after. `signal` of the use aborts when
   * the sandbox's Lease goes away or changes holder — deleted or expired, on any replica — with
   * the reason: `sandbox_not_found`, or `lease_lost` when our own keep-alive failed before it went.
   */
  async use<T>(
    tenant: string,
    id: string,
    ctx: { requestId: string; signal: AbortSignal; what: string },
    fn: (use: SandboxUse) => Promise<Result<T>>,
  ): Promise<Result<T>> {
    const found = this.find(tenant, id);
    const ended = this.ended(tenant, id, found?.view.pod);
    if (ended) return err(ended);
    if (!found) return err(notFound(id));
    const podName = found.view.pod;
    const log = { requestId: ctx.requestId, pod: podName };
    const touched = await this.touch(tenant, id, podName, {
      [SANDBOX_ANNOTATIONS.lastCommand]: ctx.what.slice(0, LAST_COMMAND_CHARS),
    });
    if (!touched.ok) {
      if (touched.error.code !== "sandbox_not_found")
        logFailure(this.o.log, "sandbox renewal before a use failed", touched.error, log);
      return touched;
    }
    const podIP = this.o.store.pods.get(podName)?.status?.podIP;
    // Gone from the cache or not running (yet, again): there is no address to send anything to.
    if (!podIP) {
      this.o.log.warn({ ...log, sandboxId: id }, "sandbox pod has no IP");
      return err(new AppError("sandbox_failed", `sandbox ${id} is not reachable: its pod is not running`));
    }
    const env = this.envOf(touched.value, id);
    if (!env.ok) {
      logFailure(this.o.log, "sandbox env could not be opened", env.error, log);
      return env;
    }
    const gone = new AbortController();
    /** The last keep-alive that failed: if the Lease then goes, that is why (not a delete). */
    let renewFailure: AppError | undefined;
    const holder = sandboxHolder(tenant, id);
    const stopPodWatch = this.o.store.pods.onChange((c) => {
      if (c.obj.metadata?.name !== podName || !podFailure(c.obj)) return;
      const ended = this.ended(tenant, id, podName);
      if (ended) gone.abort(ended);
    });
    const stopWatch = this.o.store.leases.onChange((c) => {
      if (c.obj.metadata?.name !== podName) return;
      if (c.type === "delete" || holderOf(c.obj) !== holder)
        gone.abort(
          this.ended(tenant, id, podName) ??
            (renewFailure
              ? new AppError(
                  "lease_lost",
                  `sandbox ${id} expired while in use because renewing its Lease failed; its commands were killed`,
                )
              : new AppError(
                  "sandbox_not_found",
                  `sandbox ${id} was deleted while in use; its commands were killed`,
                )),
        );
    });
    const periodMs = Math.max(1000, (touched.value.spec?.leaseDurationSeconds ?? 30) * 333);
    let renewedAt = this.clock.now();
    let timer: unknown;
    let using = true;
    const keepAlive = () => {
      timer = this.clock.setTimeout(async () => {
        const renewed = await this.touch(tenant, id, podName);
        // Not found: it was deleted (the watch says so too); anything else is our renewal failing.
        if (!renewed.ok && renewed.error.code !== "sandbox_not_found") {
          renewFailure = renewed.error;
          logFailure(this.o.log, "sandbox keep-alive failed", renewed.error, log);
        } else if (renewed.ok) {
          renewFailure = undefined;
          renewedAt = this.clock.now();
        }
        if (using && !gone.signal.aborted) keepAlive();
      }, periodMs);
    };
    keepAlive();
    this.o.bus.emit({
      type: "sandbox.used",
      requestId: ctx.requestId,
      tenant,
      pod: podName,
      data: { sandboxId: id, what: ctx.what },
    });
    try {
      return await fn({
        target: { namespace: this.o.namespace, pod: podName, podIP, fence: transitionsOf(touched.value) },
        sandboxId: id,
        env: env.value,
        signal: AbortSignal.any([ctx.signal, gone.signal]),
        ended: async (waitMs) => {
          const e = await this.o.endings?.waitFor(podName, waitMs, ctx.signal);
          return e && podEndedError({ ...e, sandbox: e.sandbox ?? { tenant, id } });
        },
      });
    } finally {
      using = false;
      this.clock.clearTimeout(timer);
      stopWatch();
      stopPodWatch();
      // The idle timeout runs from the last renewal: after a use that began (or was last kept
      // alive) within RENEW_AFTER_USE_MS, that renewal is recent enough, and a Lease write before
      // the answer would add its round trip to every short call (a file write of 1 MiB, an exec).
      if (!gone.signal.aborted && this.clock.now() - renewedAt >= RENEW_AFTER_USE_MS) {
        const after = await this.touch(tenant, id, podName);
        if (!after.ok) logFailure(this.o.log, "sandbox renewal after a use failed", after.error, log);
      }
    }
  }

  // ---------- internals ----------

  /**
   * The sandbox's own env (sealed on its Lease), with the egress proxy's variables under it: pool
   * pods are made before they are a sandbox's, so the proxy reaches commands this way.
   */
  private envOf(lease: V1Lease, id: string): Result<Record<string, string> | undefined> {
    const own = this.ownEnvOf(lease, id);
    if (!own.ok || !this.o.egressEnv) return own;
    const placeholders = sandboxSecretsOf(lease);
    const secretEnv =
      placeholders.size > 0 && this.o.secrets ? this.o.secrets.env(placeholders, EGRESS_CA_BUNDLE_PATH) : {};
    return ok({ ...this.o.egressEnv, ...secretEnv, ...(own.value ?? {}) });
  }

  private ownEnvOf(lease: V1Lease, id: string): Result<Record<string, string> | undefined> {
    const sealed = sealedEnvOf(lease);
    if (sealed === undefined) return ok(undefined);
    if (!this.o.envSeal)
      return err(new AppError("sandbox_failed", "the sandbox's env cannot be read (no POOL_TOKEN)"));
    return this.o.envSeal.open(sealed, id);
  }

  /** `sandbox_evicted` when the sandbox's pod failed (still cached, or remembered after its recycle). */
  private ended(tenant: string, id: string, pod?: string): AppError | undefined {
    const endings = this.o.endings;
    if (!endings) return undefined;
    const e = (pod !== undefined ? endings.ofPod(pod) : undefined) ?? endings.ofSandbox(tenant, id);
    return e && podEndedError({ ...e, sandbox: { tenant, id } });
  }

  private live(tenant: string): SandboxInfo[] {
    return this.all().filter((s) => s.tenant === tenant);
  }

  /**
   * A named create that found its sandbox answers it, unless the request asks for another
   * `network` or `secrets` than it has: then 409 rather than silently ignoring them (the caller
   * would run with a policy it did not ask for) or applying them (a get-or-create would then be a
   * way to change a live sandbox's policy behind the back of whoever else uses it by name).
   * Absent fields ask for nothing. Lists compare as sets, host names case-insensitively.
   */
  private gotByName(
    tenant: string,
    existing: SandboxInfo,
    req: SandboxCreateRequest,
  ): Result<{ sandbox: Sandbox; created: boolean }> {
    const lease = this.find(tenant, existing.id)?.lease;
    const differs: string[] = [];
    if (req.network !== undefined && lease) {
      const stored = sandboxNetworkOf(lease) ?? { allow: [], deny: [] };
      if (
        !sameEntries(stored.allow, req.network.allow ?? []) ||
        !sameEntries(stored.deny, req.network.deny ?? [])
      )
        differs.push("network");
    }
    if (
      req.secrets !== undefined &&
      lease &&
      !sameEntries([...sandboxSecretsOf(lease).keys()], req.secrets, false)
    )
      differs.push("secrets");
    if (differs.length === 0) return ok({ sandbox: publicView(existing), created: false });
    return err(
      new AppError(
        "sandbox_name_conflict",
        `sandbox "${req.name}" (${existing.id}) already exists with another ${differs.join(" and ")}; ` +
          `change its policy with PUT /v1/sandboxes/${existing.id}/network (its secrets are fixed at creation), ` +
          "or use another name",
      ),
    );
  }

  private byName(tenant: string, name: string): SandboxInfo | undefined {
    const same = this.live(tenant).filter((s) => s.name === name);
    same.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    return same[0];
  }

  private find(tenant: string, id: string): { view: SandboxInfo; lease: V1Lease } | undefined {
    for (const l of this.o.store.leases.list()) {
      if (sandboxIdOf(l) !== id) continue;
      const view = sandboxView(l, this.o.region);
      // Another tenant's sandbox does not exist for this caller.
      if (!view || view.tenant !== tenant || holderOf(l) !== sandboxHolder(tenant, id)) return undefined;
      return { view, lease: l };
    }
    return undefined;
  }

  /** Renew the sandbox's Lease by CAS (retrying on a concurrent use's write), setting `annotate` on it. */
  private async touch(
    tenant: string,
    id: string,
    pod: string,
    /** Annotations to set, or computed from the Lease as each attempt finds it (a list kept on it). */
    annotate: Record<string, string> | ((lease: V1Lease) => Result<Record<string, string>>) = {},
    /** The annotations must be written (a policy), not merely the Lease renewed (a command preview). */
    required = false,
  ): Promise<Result<V1Lease>> {
    const holder = sandboxHolder(tenant, id);
    let lease = this.o.store.leases.get(pod);
    let set: Record<string, string> = {};
    for (let attempt = 0; attempt < 5; attempt++) {
      if (!lease || holderOf(lease) !== holder || !isSandboxLease(lease)) return err(notFound(id));
      const change = typeof annotate === "function" ? annotate(lease) : ok(annotate);
      if (!change.ok) return change;
      set = change.value;
      const annotations = { ...(lease.metadata?.annotations ?? {}), ...set };
      const body: V1Lease = {
        ...lease,
        metadata: { ...lease.metadata, annotations },
        spec: { ...lease.spec, acquireTime: toMicroTime(lease.spec?.acquireTime), renewTime: microNow() },
      };
      try {
        return ok(await this.o.store.replaceLease(body, this.timeoutMs, "renew sandbox lease"));
      } catch (e) {
        const f = k8sFailure(e);
        if (isNotFound(f)) return err(notFound(id));
        if (!isConflict(f))
          return err(new AppError("sandbox_failed", `could not renew sandbox ${id}`, { cause: e }));
        const now = await this.reread(pod, id);
        if (!now.ok) return now;
        lease = now.value;
      }
    }
    // Every attempt lost to a concurrent use's renewal: the Lease was renewed just now either way,
    // which is all a renewal wants; a change it was to carry was not written.
    const carried =
      !required || Object.entries(set).every(([k, v]) => lease?.metadata?.annotations?.[k] === v);
    if (lease && holderOf(lease) === holder)
      return carried
        ? ok(lease)
        : err(
            new AppError(
              "sandbox_failed",
              `sandbox ${id} is busy; its Lease could not be updated, try again`,
            ),
          );
    return err(notFound(id));
  }

  /** The sandbox's Lease as the server has it now (after a lost CAS): gone is sandbox_not_found. */
  private async reread(pod: string, id: string): Promise<Result<V1Lease>> {
    try {
      return ok(await this.o.store.readLease(pod, this.timeoutMs));
    } catch (e) {
      const f = k8sFailure(e);
      if (isNotFound(f)) return err(notFound(id));
      return err(new AppError("sandbox_failed", `could not read the Lease of sandbox ${id}`, { cause: e }));
    }
  }

  /** The one delete path (pool-state), attributed to the request; failures are logged there. */
  private async deletePodAndLease(
    name: string,
    cause: { requestId: string; tenant: string; reason: string },
  ): Promise<boolean> {
    this.o.store.attributeDeletion(name, cause);
    return deletePodAndLease(this.o.store, name, {
      timeoutMs: this.timeoutMs,
      log: this.o.log,
      requestId: cause.requestId,
    });
  }
}

function publicView(s: SandboxInfo): Sandbox {
  const { tenant: _t, lastCommand: _c, ...rest } = s;
  return rest;
}

/** Two lists with the same entries in any order (case-insensitive for host patterns). */
function sameEntries(a: readonly string[], b: readonly string[], ignoreCase = true): boolean {
  const norm = (l: readonly string[]) =>
    [...new Set(l.map((x) => (ignoreCase ? x.toLowerCase() : x)))].sort();
  const [x, y] = [norm(a), norm(b)];
  return x.length === y.length && x.every((v, i) => v === y[i]);
}
