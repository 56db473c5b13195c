import type { V1Lease } from "@kubernetes/client-node";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { microNow } from "../k8s/microtime.ts";
import { type FailureLog, logFailure } from "../pool-state/failure-log.ts";
import { ObservedExpiry } from "../pool-state/observed-expiry.ts";

/**
 * Queue demand across replicas. Every replica publishes its own numbers as annotations on its own
 * Lease `pi-sandbox-agent-<agentId>` (CAS, short deadline, only when they change or as a heartbeat);
 * the leader lists those Leases and sums the fresh ones. A Lease that has not changed, as the leader
 * observed it, for 2 heartbeats belongs to a replica that is gone or cut off: ignored (no clock
 * comparison with another machine).
 */

export interface ReplicaDemand {
  /** Callers waiting for a pod on that replica (not those held back by their tenant's cap). */
  queued: number;
  /** Acquisitions per second that had to wait and were served (decaying). */
  arrivalsPerSecond: number;
  /** Waiting callers per tenant. */
  tenants: Record<string, number>;
}

export const DEMAND_LABEL = { "pi-sandbox-runtime/role": "agent-demand" } as const;
const DEMAND_SELECTOR = "pi-sandbox-runtime/role=agent-demand";
const ANNOTATION = "pi-sandbox-runtime/demand";
const AGENT_ANNOTATION = "pi-sandbox-runtime/agent-id";

export function demandLeaseName(agentId: string): string {
  // Lease names are DNS subdomains: lower-case, at most 253 characters.
  const safe = agentId.toLowerCase().replace(/[^a-z0-9.-]/g, "-");
  return `pi-sandbox-agent-${safe}`.slice(0, 253).replace(/[-.]+$/, "");
}

export interface DemandOptions {
  clients: KubeClients;
  namespace: string;
  agentId: string;
  log: FailureLog;
  /** How often numbers are looked at and, if changed, written (default 1 s). */
  intervalMs?: number;
  /** Longest gap between writes (default 3 s). */
  heartbeatMs?: number;
  /**
   * The leader deletes another replica's Lease it has seen unchanged this long (default 10 min,
   * 200 heartbeats): what a replica that was killed without its shutdown leaves behind.
   */
  removeAfterMs?: number;
  now?: () => number;
}

/** Round so that a slowly decaying rate does not cause a write every interval. */
function rounded(d: ReplicaDemand): ReplicaDemand {
  return { ...d, arrivalsPerSecond: Math.round(d.arrivalsPerSecond * 2) / 2 };
}

/** Runs `fn` now and then `intervalMs` after each run ends (never two at once) until stopped. */
function repeat(intervalMs: number, fn: () => Promise<void>): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let on = true;
  const tick = () => {
    void fn().finally(() => {
      if (on) timer = setTimeout(tick, intervalMs);
    });
  };
  timer = setTimeout(tick, 0);
  return {
    stop() {
      on = false;
      clearTimeout(timer);
    },
  };
}

export class DemandPublisher {
  private loop: { stop(): void } | undefined;
  private lease: V1Lease | undefined;
  private lastText = "";
  private lastWrite = Number.NEGATIVE_INFINITY;
  private writing: Promise<void> | undefined;
  private readonly name: string;
  private readonly now: () => number;

  constructor(
    private readonly o: DemandOptions,
    private readonly read: () => ReplicaDemand,
  ) {
    this.name = demandLeaseName(o.agentId);
    this.now = o.now ?? (() => performance.now());
  }

  start(): void {
    this.loop ??= repeat(this.o.intervalMs ?? 1_000, () => this.publish());
  }

  stop(): void {
    this.loop?.stop();
    this.loop = undefined;
  }

  /** Stops and deletes our Lease (a clean shutdown leaves nothing for the leader to clear). Never throws. */
  async withdraw(): Promise<void> {
    this.stop();
    // A write still in flight would create the Lease again after the delete.
    await this.writing;
    try {
      await this.o.clients.coordination.deleteNamespacedLease(
        { name: this.name, namespace: this.o.namespace },
        deadline(2_000),
      );
    } catch (e) {
      if (!isNotFound(k8sFailure(e))) logFailure(this.o.log, "deleting our demand Lease failed", e);
    }
    this.lease = undefined;
  }

  /** One look; writes when the numbers changed or the heartbeat is due. Never throws. */
  async publish(): Promise<void> {
    if (this.writing) return;
    const text = JSON.stringify(rounded(this.read()));
    if (text === this.lastText && this.now() - this.lastWrite < (this.o.heartbeatMs ?? 3_000)) return;
    this.writing = (async () => {
      try {
        await this.write(text);
        this.lastText = text;
        this.lastWrite = this.now();
      } catch (e) {
        // The leader then ignores our numbers once they are stale; the next tick retries.
        this.lease = undefined;
        logFailure(this.o.log, "publishing queue demand failed", e);
      }
    })();
    try {
      await this.writing;
    } finally {
      this.writing = undefined;
    }
  }

  private async write(text: string): Promise<void> {
    const api = this.o.clients.coordination;
    const ns = this.o.namespace;
    // A heartbeat's time per call: the leader ignores our numbers only after two heartbeats, and a
    // write that lands late under a burst (the API server busy with pod creates) is still useful.
    const budget = () => deadline(this.o.heartbeatMs ?? 3_000);
    const body = (base: V1Lease | undefined): V1Lease => ({
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        ...(base?.metadata ?? {}),
        name: this.name,
        namespace: ns,
        labels: { ...(base?.metadata?.labels ?? {}), ...DEMAND_LABEL },
        annotations: {
          ...(base?.metadata?.annotations ?? {}),
          [ANNOTATION]: text,
          [AGENT_ANNOTATION]: this.o.agentId,
        },
      },
      // No holder: this Lease is a notice board, not a lock (nothing may mistake it for a held pod).
      spec: {
        leaseDurationSeconds: Math.max(1, Math.ceil((2 * (this.o.heartbeatMs ?? 3_000)) / 1000)),
        renewTime: microNow(),
      },
    });
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.lease) {
        try {
          this.lease = await api.readNamespacedLease({ name: this.name, namespace: ns }, budget());
        } catch (e) {
          if (!isNotFound(k8sFailure(e))) throw e;
          try {
            this.lease = await api.createNamespacedLease({ namespace: ns, body: body(undefined) }, budget());
            return;
          } catch (e2) {
            if (isConflict(k8sFailure(e2))) continue; // created meanwhile: read it
            throw e2;
          }
        }
      }
      try {
        this.lease = await api.replaceNamespacedLease(
          { name: this.name, namespace: ns, body: body(this.lease) },
          budget(),
        );
        return;
      } catch (e) {
        if (!isConflict(k8sFailure(e)) && !isNotFound(k8sFailure(e))) throw e;
        this.lease = undefined; // someone changed or deleted it: read again
      }
    }
  }
}

export interface ClusterDemand {
  queued: number;
  arrivalsPerSecond: number;
  tenants: Record<string, number>;
  /** Replicas whose numbers were fresh (the caller's own excluded). */
  replicas: number;
}

/** The leader's view of the other replicas' demand, refreshed by one list per interval. */
export class DemandReader {
  private loop: { stop(): void } | undefined;
  private readonly expiry: ObservedExpiry;
  private latest: Array<{ name: string; key: string; agentId: string; demand: ReplicaDemand }> = [];

  constructor(private readonly o: DemandOptions) {
    this.expiry = new ObservedExpiry(o.now ?? (() => performance.now()));
  }

  start(): void {
    if (this.loop) return;
    // A new leader has observed nothing yet: every record starts its staleness clock now.
    for (const n of this.expiry.names()) this.expiry.forget(n);
    this.loop = repeat(this.o.intervalMs ?? 1_000, () => this.refresh());
  }

  stop(): void {
    this.loop?.stop();
    this.loop = undefined;
    this.latest = [];
  }

  /** Sum over the other replicas whose Lease changed within 2 heartbeats (as we observed it). */
  others(): ClusterDemand {
    const sum: ClusterDemand = { queued: 0, arrivalsPerSecond: 0, tenants: {}, replicas: 0 };
    const staleAfter = 2 * (this.o.heartbeatMs ?? 3_000);
    for (const r of this.latest) {
      if (r.agentId === this.o.agentId || this.expiry.isExpired(r.name, r.key, staleAfter)) continue;
      sum.replicas++;
      sum.queued += r.demand.queued;
      sum.arrivalsPerSecond += r.demand.arrivalsPerSecond;
      for (const [t, n] of Object.entries(r.demand.tenants)) sum.tenants[t] = (sum.tenants[t] ?? 0) + n;
    }
    return sum;
  }

  /** One list; on failure the last view stays and its entries turn stale on their own. Never throws. */
  async refresh(): Promise<void> {
    try {
      const list = await this.o.clients.coordination.listNamespacedLease(
        { namespace: this.o.namespace, labelSelector: DEMAND_SELECTOR },
        deadline(2_000),
      );
      const next: typeof this.latest = [];
      for (const l of list.items) {
        const name = l.metadata?.name ?? "";
        const demand = parseDemand(l.metadata?.annotations?.[ANNOTATION]);
        if (!demand) continue;
        const key = l.metadata?.resourceVersion ?? "";
        this.expiry.observe(name, key);
        next.push({ name, key, agentId: l.metadata?.annotations?.[AGENT_ANNOTATION] ?? name, demand });
      }
      for (const n of this.expiry.names()) if (!next.some((r) => r.name === n)) this.expiry.forget(n);
      this.latest = next;
      await this.removeAbandoned(next);
    } catch (e) {
      logFailure(this.o.log, "reading queue demand failed", e);
    }
  }

  /**
   * Conditional on the version we saw unchanged: a replica that comes back and writes in between
   * keeps its Lease (409), and one that deleted its own is already gone (404). Both are fine.
   */
  private async removeAbandoned(records: typeof this.latest): Promise<void> {
    const after = this.o.removeAfterMs ?? 10 * 60_000;
    for (const r of records) {
      if (r.agentId === this.o.agentId || !this.expiry.isExpired(r.name, r.key, after)) continue;
      try {
        await this.o.clients.coordination.deleteNamespacedLease(
          { name: r.name, namespace: this.o.namespace, body: { preconditions: { resourceVersion: r.key } } },
          deadline(2_000),
        );
        this.expiry.forget(r.name);
        this.o.log.warn(
          { lease: r.name, agentId: r.agentId },
          "removed the demand Lease of a replica gone for good",
        );
      } catch (e) {
        const f = k8sFailure(e);
        if (!isNotFound(f) && !isConflict(f))
          logFailure(this.o.log, "removing an abandoned demand Lease failed", e);
      }
    }
  }
}

export function parseDemand(text: string | undefined): ReplicaDemand | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Partial<ReplicaDemand>;
    const queued = Number(v.queued);
    const rate = Number(v.arrivalsPerSecond);
    if (!Number.isFinite(queued) || queued < 0 || !Number.isFinite(rate) || rate < 0) return undefined;
    const tenants: Record<string, number> = {};
    if (v.tenants && typeof v.tenants === "object")
      for (const [t, n] of Object.entries(v.tenants)) if (Number(n) > 0) tenants[t] = Number(n);
    return { queued: Math.floor(queued), arrivalsPerSecond: rate, tenants };
  } catch {
    return undefined;
  }
}
