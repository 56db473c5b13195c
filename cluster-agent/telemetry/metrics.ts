import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { PodState, PoolSnapshot } from "../../shared/api.ts";
import type { PoolEvent, PoolEventOf } from "../../shared/events.ts";

/*
 * Prometheus metrics for the agent. They are derived from bus events in ONE place
 * (`subscribeMetrics`), so the lease manager, pool controller and executors only emit events and
 * never touch metrics. The one exception is the tunnel gauge: tunnel state is not a pool event,
 * so the tunnel client calls `metrics.setTunnelConnected()`.
 *
 * Events are the typed union of shared/events.ts, so every field read here is one the agent sends.
 * A replaced pod (lease.released/expired with recycle "replace") counts as recycling until
 * pod.ready/pod.deleted. queue.left observes "aborted" and "shutdown" waits only: a served waiter
 * is observed through lease.acquired, a timed-out one through queue.timeout.
 */

export const POD_STATES: readonly PodState[] = ["starting", "ready", "leased", "recycling", "failed"];

export interface AgentMetrics {
  readonly registry: Registry;
  readonly acquireDuration: Histogram;
  readonly queueWait: Histogram<"outcome">;
  readonly execDuration: Histogram<"result">;
  readonly poolPods: Gauge<"state">;
  readonly queueDepth: Gauge;
  /**
   * Fairness without tenant names (a label would publish every tenant's name, and one series per
   * tenant, to whoever scrapes the agent): how many tenants wait, and the longest one tenant's queue.
   */
  readonly queueTenants: Gauge;
  readonly queueDepthLargestTenant: Gauge;
  /** The leader's scale decisions by reason, and the pods (free + starting) it last wanted. */
  readonly scaleDecisions: Counter<"reason">;
  readonly poolWanted: Gauge;
  /** Pods no node has room for (PodScheduled=False/Unschedulable) at the leader's last decision. */
  readonly poolUnschedulable: Gauge;
  readonly acquisitions: Counter;
  readonly leaseConflicts: Counter;
  readonly leasesLost: Counter;
  readonly leasesExpired: Counter;
  readonly queueTimeouts: Counter;
  readonly tunnelConnected: Gauge;
  readonly events: Counter<"type">;
  setTunnelConnected(connected: boolean): void;
  /** Sandboxes (cluster-agent/sandboxes) by state, read from the Lease cache at each scrape. */
  readonly sandboxes: Gauge<"state">;
  readonly sandboxEvents: Counter<"event">;
  /** 1 when a sandbox pod's own cgroup has no pids limit (pids.max = max), 0 when it has one; -1 until checked. */
  readonly sandboxPidsUnlimited: Gauge;
  /** Pods that failed (evicted, OOM-killed, …) by the kubelet's reason, as the leader recycled them. */
  readonly podFailures: Counter<"reason">;
  readonly fileBytes: Counter<"direction">;
  readonly processesStarted: Counter;
  readonly processesExited: Counter<"result">;
  /** Port links opened and revoked (no tenant, sandbox or port label). */
  readonly portLinkEvents: Counter<"event">;
  addFileBytes(direction: "in" | "out", bytes: number): void;
  /** Egress proxy connections by decision and refusal code (no tenant, sandbox or host label). */
  readonly egressConnections: Counter<"decision" | "reason">;
  readonly egressBytes: Counter<"direction">;
  /** One ended proxy connection (cluster-agent/egress EgressEvent). */
  countEgress(e: {
    decision: "allowed" | "denied";
    reason?: string;
    bytesUp: number;
    bytesDown: number;
  }): void;
  /** Run at every scrape before the pool gauges are read (set by subscribeMetrics). */
  beforeCollect: (() => void) | null;
}

export interface MetricsOptions {
  /** Own registry by default, so tests and several agents in one process never share series. */
  registry?: Registry;
  /** Node process metrics (CPU, memory, event loop lag); on in production, off in tests. */
  defaultMetrics?: boolean;
  /** Labels on every series, e.g. { region }. */
  defaultLabels?: Record<string, string>;
}

const ACQUIRE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];
const QUEUE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];
const EXEC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];

export function createMetrics(opts: MetricsOptions = {}): AgentMetrics {
  const registry = opts.registry ?? new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: "pi_sandbox_agent_" });
  const registers = [registry];

  const tunnelConnected = new Gauge({
    name: "pi_sandbox_tunnel_connected",
    help: "1 while the agent's tunnel to the edge is connected, else 0.",
    registers,
  });
  tunnelConnected.set(0);
  let metrics: AgentMetrics | null = null;
  const poolPods = new Gauge({
    name: "pi_sandbox_pool_pods",
    help: "Sandbox pods in the pool by state.",
    labelNames: ["state"] as const,
    registers,
    collect() {
      metrics?.beforeCollect?.();
    },
  });
  for (const s of POD_STATES) poolPods.set({ state: s }, 0);

  metrics = {
    registry,
    beforeCollect: null,
    acquireDuration: new Histogram({
      name: "pi_sandbox_acquire_duration_seconds",
      help: "Time from an acquire call to a held lease, queue wait included.",
      buckets: ACQUIRE_BUCKETS,
      registers,
    }),
    queueWait: new Histogram({
      name: "pi_sandbox_queue_wait_seconds",
      help: "Time spent queued for a pod (0 when one was free), by outcome: acquired, timeout, aborted, shutdown.",
      labelNames: ["outcome"] as const,
      buckets: QUEUE_BUCKETS,
      registers,
    }),
    execDuration: new Histogram({
      name: "pi_sandbox_exec_duration_seconds",
      help: "Command run time in the sandbox, by result: ok, nonzero, timeout, killed, error.",
      labelNames: ["result"] as const,
      buckets: EXEC_BUCKETS,
      registers,
    }),
    poolPods,
    queueDepth: new Gauge({ name: "pi_sandbox_queue_depth", help: "Callers waiting for a pod.", registers }),
    queueTenants: new Gauge({
      name: "pi_sandbox_queue_tenants",
      help: "Tenants with at least one caller waiting for a pod on this agent.",
      registers,
    }),
    queueDepthLargestTenant: new Gauge({
      name: "pi_sandbox_queue_depth_largest_tenant",
      help: "Callers of the tenant with the most callers waiting for a pod on this agent.",
      registers,
    }),
    scaleDecisions: new Counter({
      name: "pi_sandbox_pool_scale_decisions_total",
      help: "Pool scale decisions of the leader (creates, removals, backoffs), by reason.",
      labelNames: ["reason"] as const,
      registers,
    }),
    poolWanted: new Gauge({
      name: "pi_sandbox_pool_wanted_pods",
      help: "Free plus starting pods the leader last wanted: POOL_SIZE + queued + arrivals x start-up.",
      registers,
    }),
    poolUnschedulable: new Gauge({
      name: "pi_sandbox_pool_unschedulable_pods",
      help: "Sandbox pods Pending because no node has room for their requests (PodScheduled=False/Unschedulable); the pool adds none while any exists.",
      registers,
    }),
    acquisitions: new Counter({
      name: "pi_sandbox_lease_acquisitions_total",
      help: "Leases acquired.",
      registers,
    }),
    leaseConflicts: new Counter({
      name: "pi_sandbox_lease_conflicts_total",
      help: "Lease compare-and-swap attempts lost to another holder (409 Conflict).",
      registers,
    }),
    leasesLost: new Counter({
      name: "pi_sandbox_leases_lost_total",
      help: "Held leases lost (renewal failed or taken over); the command was aborted.",
      registers,
    }),
    leasesExpired: new Counter({
      name: "pi_sandbox_leases_expired_total",
      help: "Leases observed expired without a release.",
      registers,
    }),
    queueTimeouts: new Counter({
      name: "pi_sandbox_queue_timeouts_total",
      help: "Callers that gave up waiting for a pod (503 queue_timeout).",
      registers,
    }),
    tunnelConnected,
    events: new Counter({
      name: "pi_sandbox_pool_events_total",
      help: "Pool events emitted, by type.",
      labelNames: ["type"] as const,
      registers,
    }),
    setTunnelConnected(connected: boolean) {
      tunnelConnected.set(connected ? 1 : 0);
    },
    sandboxes: new Gauge({
      name: "pi_sandbox_sandboxes",
      help: "Sandboxes that live across requests, by state (this cluster, from the Lease cache).",
      labelNames: ["state"] as const,
      registers,
    }),
    sandboxEvents: new Counter({
      name: "pi_sandbox_sandbox_events_total",
      help: "Sandbox creations, deletions and expirations seen by this agent.",
      labelNames: ["event"] as const,
      registers,
    }),
    sandboxPidsUnlimited: new Gauge({
      name: "pi_sandbox_pod_pids_unlimited",
      help: "1 when a sandbox container's own cgroup has no pids limit (pids.max = max; a kubelet's podPidsLimit on the pod cgroup is not visible there), 0 when it has one, -1 until checked.",
      registers,
    }),
    podFailures: new Counter({
      name: "pi_sandbox_pod_failures_total",
      help: "Sandbox pods that failed (Evicted, OOMKilled, …), by the kubelet's reason; counted by the pool leader.",
      labelNames: ["reason"] as const,
      registers,
    }),
    processesStarted: new Counter({
      name: "pi_sandbox_processes_started_total",
      help: "Long-lived sandbox processes started through this agent (API or model tools).",
      registers,
    }),
    processesExited: new Counter({
      name: "pi_sandbox_processes_exited_total",
      help: "Processes this agent started that ended, by how (ok, nonzero, killed, timeout; lost: the watch ended without seeing the exit, e.g. the sandbox was deleted).",
      labelNames: ["result"] as const,
      registers,
    }),
    portLinkEvents: new Counter({
      name: "pi_sandbox_port_link_events_total",
      help: "Port links opened (created) and revoked through this agent; expiry and sandbox deletion end links without an event.",
      labelNames: ["event"] as const,
      registers,
    }),
    fileBytes: new Counter({
      name: "pi_sandbox_file_bytes_total",
      help: "Bytes moved by the sandbox files API, by direction (in = written to a sandbox).",
      labelNames: ["direction"] as const,
      registers,
    }),
    addFileBytes(direction: "in" | "out", bytes: number) {
      if (bytes > 0) this.fileBytes.inc({ direction }, bytes);
    },
    egressConnections: new Counter({
      name: "pi_sandbox_egress_connections_total",
      help: "Connections through this agent's egress proxy by decision and refusal code (reason is empty when allowed).",
      labelNames: ["decision", "reason"] as const,
      registers,
    }),
    egressBytes: new Counter({
      name: "pi_sandbox_egress_bytes_total",
      help: "Bytes through this agent's egress proxy (up = from sandboxes).",
      labelNames: ["direction"] as const,
      registers,
    }),
    countEgress(e) {
      this.egressConnections.inc({ decision: e.decision, reason: e.reason ?? "" });
      if (e.bytesUp > 0) this.egressBytes.inc({ direction: "up" }, e.bytesUp);
      if (e.bytesDown > 0) this.egressBytes.inc({ direction: "down" }, e.bytesDown);
    },
  };
  metrics.sandboxPidsUnlimited.set(-1);
  return metrics;
}

/** The event bus as metrics need it (cluster-agent/events/bus.ts satisfies it). */
export interface EventSource {
  on(listener: (e: PoolEvent) => void): () => void;
}

const seconds = (ms: number): number | null => (Number.isFinite(ms) && ms >= 0 ? ms / 1000 : null);

function execResult(
  data: Pick<PoolEventOf<"exec.finished">["data"], "timedOut" | "error" | "exitCode">,
): "ok" | "nonzero" | "timeout" | "killed" | "error" {
  if (data.timedOut) return "timeout";
  if (data.error !== undefined) return "error";
  if (data.exitCode === null) return "killed"; // no exit code: ended by a signal
  return data.exitCode === 0 ? "ok" : "nonzero";
}

type PoolView = Pick<PoolSnapshot, "pods" | "queue">;

/**
 * Derive every metric from bus events. Returns the unsubscribe function.
 *
 * Pods by state and queue depth: a bus only carries this agent's lease events, so with several
 * replicas the event-derived view misses other agents' leases. Pass `snapshot` (the pool's own
 * `snapshot()`, built from the Lease cache) and those two gauges are read from it at each scrape;
 * without it they are derived from events, seeded by `initial`.
 */
export function subscribeMetrics(
  bus: EventSource,
  metrics: AgentMetrics,
  opts: { initial?: PoolView; snapshot?: () => PoolView } = {},
): () => void {
  const pods = new Map<string, { state: PodState; requestId: string | null }>();
  /** requestId → tenant. */
  const waiting = new Map<string, string>();
  for (const p of opts.initial?.pods ?? [])
    pods.set(p.name, { state: p.state, requestId: p.holder?.requestId ?? null });
  for (const w of opts.initial?.queue.waiters ?? []) waiting.set(w.requestId, w.tenant);

  const publishPods = () => {
    const counts: Record<PodState, number> = { starting: 0, ready: 0, leased: 0, recycling: 0, failed: 0 };
    for (const p of pods.values()) counts[p.state] += 1;
    for (const s of POD_STATES) metrics.poolPods.set({ state: s }, counts[s]);
  };
  const publishQueue = () => {
    metrics.queueDepth.set(waiting.size);
    const byTenant = new Map<string, number>();
    for (const t of waiting.values()) byTenant.set(t, (byTenant.get(t) ?? 0) + 1);
    metrics.queueTenants.set(byTenant.size);
    metrics.queueDepthLargestTenant.set(Math.max(0, ...byTenant.values()));
  };
  const setPod = (name: string | undefined, state: PodState, requestId: string | null = null) => {
    if (name) pods.set(name, { state, requestId });
  };
  const unqueue = (requestId: string | undefined) => {
    if (requestId) waiting.delete(requestId);
  };
  const fromSnapshot = opts.snapshot;
  if (fromSnapshot) {
    metrics.beforeCollect = () => {
      const s = fromSnapshot();
      pods.clear();
      for (const p of s.pods) pods.set(p.name, { state: p.state, requestId: p.holder?.requestId ?? null });
      waiting.clear();
      for (const w of s.queue.waiters) waiting.set(w.requestId, w.tenant);
      publishPods();
      publishQueue();
    };
  }
  publishPods();
  publishQueue();

  const off = bus.on((e) => {
    metrics.events.inc({ type: e.type });
    switch (e.type) {
      case "pod.created":
        setPod(e.pod, "starting");
        break;
      case "pod.ready":
        setPod(e.pod, "ready");
        break;
      case "pod.deleted":
        if (e.pod) pods.delete(e.pod);
        break;
      case "pod.pids":
        metrics.sandboxPidsUnlimited.set(e.data.unlimited ? 1 : 0);
        break;
      case "pod.failed":
        // The kubelet's reasons are a short CamelCase vocabulary; anything else must not mint series.
        metrics.podFailures.inc({ reason: /^[A-Za-z]{1,40}$/.test(e.data.reason) ? e.data.reason : "other" });
        setPod(e.pod, "failed");
        break;
      case "lease.acquired": {
        metrics.acquisitions.inc();
        const acquire = seconds(e.data.acquireMs);
        if (acquire !== null) metrics.acquireDuration.observe(acquire);
        const queued = seconds(e.data.queueMs);
        if (queued !== null) metrics.queueWait.observe({ outcome: "acquired" }, queued);
        unqueue(e.requestId);
        setPod(e.pod, "leased", e.requestId ?? null);
        break;
      }
      case "lease.released":
      case "lease.expired":
      case "lease.lost": {
        if (e.type === "lease.expired") metrics.leasesExpired.inc();
        if (e.type === "lease.lost") metrics.leasesLost.inc();
        const p = e.pod ? pods.get(e.pod) : undefined;
        // A stale release (the pod already went to another request) must not free the pod.
        if (p && p.state === "leased" && (!e.requestId || !p.requestId || p.requestId === e.requestId)) {
          const replaced = e.type !== "lease.lost" && e.data.recycle === "replace";
          setPod(e.pod, replaced ? "recycling" : "ready");
        }
        break;
      }
      case "lease.conflict":
        metrics.leaseConflicts.inc();
        break;
      case "queue.entered":
        if (e.requestId) waiting.set(e.requestId, e.tenant ?? "");
        break;
      case "queue.left": {
        unqueue(e.requestId);
        const waited = seconds(e.data.waitedMs);
        const reason = e.data.reason;
        if ((reason === "aborted" || reason === "shutdown") && waited !== null) {
          metrics.queueWait.observe({ outcome: reason }, waited);
        }
        break;
      }
      case "queue.timeout": {
        unqueue(e.requestId);
        metrics.queueTimeouts.inc();
        const waited = seconds(e.data.waitedMs);
        if (waited !== null) metrics.queueWait.observe({ outcome: "timeout" }, waited);
        break;
      }
      case "exec.finished": {
        const d = seconds(e.data.durationMs);
        if (d !== null) metrics.execDuration.observe({ result: execResult(e.data) }, d);
        break;
      }
      case "process.started":
        metrics.processesStarted.inc();
        break;
      case "process.exited":
        metrics.processesExited.inc({
          result: e.data.error !== undefined ? "lost" : execResult({ ...e.data, error: undefined }),
        });
        break;
      case "port_link.created":
      case "port_link.revoked":
        metrics.portLinkEvents.inc({ event: e.type.slice("port_link.".length) });
        break;
      case "sandbox.created":
      case "sandbox.deleted":
      case "sandbox.expired":
        metrics.sandboxEvents.inc({ event: e.type.slice("sandbox.".length) });
        break;
      case "pool.scale":
        if (
          e.data.create > 0 ||
          e.data.remove > 0 ||
          e.data.reason === "create refused" ||
          e.data.reason === "unschedulable"
        )
          metrics.scaleDecisions.inc({ reason: e.data.reason });
        if (e.data.reason !== "create refused") metrics.poolWanted.set(e.data.wanted);
        if (e.data.unschedulable !== undefined) metrics.poolUnschedulable.set(e.data.unschedulable);
        break;
      case "exec.started":
      case "lease.renewed":
      case "pool.leader":
      case "sandbox.used":
        break;
    }
    if (e.type.startsWith("pod.") || e.type.startsWith("lease.")) publishPods();
    if (e.type.startsWith("queue.") || e.type === "lease.acquired") publishQueue();
  });
  return () => {
    off();
    if (fromSnapshot) metrics.beforeCollect = null;
  };
}

/** `GET /metrics` content (Prometheus text format), served by createMetricsApp (cluster-agent/http/app.ts) on METRICS_PORT. */
export async function metricsText(
  metrics: Pick<AgentMetrics, "registry">,
): Promise<{ contentType: string; body: string }> {
  return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
}
