import { randomBytes } from "node:crypto";
import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import type { PodSnapshot, PodState, PoolSnapshot } from "../shared/api.ts";
import { AppError, err, ok, type Result } from "../shared/errors.ts";
import type { AgentConfig } from "./config.ts";
import { EventBus } from "./events/bus.ts";
import { RecentExecutions } from "./events/recent-executions.ts";
import { RunningProcesses } from "./events/running-processes.ts";
import type { Scrubber } from "./exec/executor.ts";
import { podExecToken } from "./exec/pod-token.ts";
import type { KubeClients } from "./k8s/client.ts";
import { microTimeString } from "./k8s/microtime.ts";
import { LeaseManager } from "./leases/manager.ts";
import { PoolController } from "./pool/controller.ts";
import { CreateBudget } from "./pool/create-budget.ts";
import { DemandPublisher, DemandReader } from "./pool/demand.ts";
import { LeaderElector } from "./pool/leader.ts";
import { buildSandboxPod, loadPodTemplate, podName } from "./pool/pod-template.ts";
import { PoolCaches } from "./pool-state/caches.ts";
import { type FailureLog, logFailure } from "./pool-state/failure-log.ts";
import { holderOf, parseHolder, tenantOf } from "./pool-state/lease-record.ts";
import { PodEndings } from "./pool-state/pod-endings.ts";
import { isFinished, isPodReady, isTerminating } from "./pool-state/pod-state.ts";
import { createLogger } from "./telemetry/logger.ts";

export type PoolConfig = Pick<
  AgentConfig,
  | "namespace"
  | "poolSize"
  | "poolMaxPods"
  | "poolMaxCreatePerSecond"
  | "poolScaleDownAfterSeconds"
  | "leaseTtlSeconds"
  | "leaderLeaseSeconds"
  | "queueTimeoutSeconds"
  | "recycle"
  | "tenantMaxLeases"
  | "tenantShareLeases"
  | "sandboxImage"
  | "podTemplatePath"
  | "runtimeClassName"
  | "agentId"
  | "region"
  | "podReadyTimeoutSeconds"
  | "poolToken"
> &
  // Which env carries each pod's token (the pydantic-http contract names it its own way); default http.
  Partial<Pick<AgentConfig, "execMode">>;

export interface AgentPoolOptions {
  config: PoolConfig;
  clients: KubeClients;
  bus?: EventBus;
  scrubber?: Scrubber;
  /** Leader-elect and run the controller (default true); false = lease manager only. */
  runController?: boolean;
  /** Controller knobs for tests. */
  orphanGraceMs?: number;
  /** How often each replica publishes its queue demand and the leader reads it (default 1 s). */
  demandIntervalMs?: number;
  onCacheError?: (what: string, e: unknown, retryInMs: number) => void;
  /** Where caught errors of the lease core and the controller go (default: a warn-level logger). */
  log?: FailureLog;
}

/**
 * One agent's share of the pool: the caches and lease manager every replica runs, and the pool
 * controller that only the elected leader runs.
 */
export class AgentPool {
  readonly bus: EventBus;
  readonly caches: PoolCaches;
  /** Pods that failed (evicted, OOM-killed), remembered for a while: callers are told why. */
  readonly endings: PodEndings;
  readonly manager: LeaseManager;
  readonly controller: PoolController;
  readonly elector: LeaderElector | undefined;
  readonly demandPublisher: DemandPublisher;
  readonly demandReader: DemandReader;
  /** What the snapshot lists as this agent's recent executions. */
  readonly recentExecutions: RecentExecutions;
  /** What the snapshot lists as the running processes this agent started. */
  readonly runningProcesses: RunningProcesses;
  private readonly log: FailureLog;

  private constructor(
    readonly config: PoolConfig,
    opts: AgentPoolOptions,
    template: V1Pod,
  ) {
    this.bus = opts.bus ?? new EventBus(config.agentId, config.region);
    this.recentExecutions = new RecentExecutions(this.bus);
    this.runningProcesses = new RunningProcesses(this.bus);
    this.log = opts.log ?? createLogger({ level: "warn", base: { agentId: config.agentId } });
    const log = this.log;
    const onCacheError =
      opts.onCacheError ??
      ((what: string, e: unknown, retryInMs: number) =>
        logFailure(log, `${what} watch failed; restarting in ${retryInMs} ms`, e));
    this.caches = new PoolCaches(opts.clients, config.namespace, this.bus, onCacheError);
    this.endings = new PodEndings(this.caches);
    this.manager = new LeaseManager({
      store: this.caches,
      endings: this.endings,
      bus: this.bus,
      log: this.log,
      namespace: config.namespace,
      agentId: config.agentId,
      leaseTtlSeconds: config.leaseTtlSeconds,
      queueTimeoutSeconds: config.queueTimeoutSeconds,
      tenantMaxLeases: config.tenantMaxLeases,
      tenantShareLeases: config.tenantShareLeases,
      recycle: config.recycle,
      scrubber: opts.scrubber,
    });
    const demandOptions = {
      clients: opts.clients,
      namespace: config.namespace,
      agentId: config.agentId,
      log: this.log,
      intervalMs: opts.demandIntervalMs ?? 1_000,
      heartbeatMs: 3 * (opts.demandIntervalMs ?? 1_000),
    };
    this.demandPublisher = new DemandPublisher(demandOptions, () => this.manager.demand());
    this.demandReader = new DemandReader(demandOptions);
    const runController = opts.runController !== false;
    // Published on the leader Lease with each renewal; a successor counts what it says (create-budget.ts).
    const budget = runController ? new CreateBudget() : undefined;
    this.controller = new PoolController({
      clients: opts.clients,
      caches: this.caches,
      bus: this.bus,
      log: this.log,
      namespace: config.namespace,
      poolSize: config.poolSize,
      maxPods: config.poolMaxPods,
      maxCreatePerSecond: config.poolMaxCreatePerSecond,
      scaleDownAfterSeconds: config.poolScaleDownAfterSeconds,
      // The leader's own queue first-hand, the other replicas' as they published it.
      demand: () => {
        const own = this.manager.demand();
        const others = this.demandReader.others();
        return {
          queued: own.queued + others.queued,
          arrivalsPerSecond: own.arrivalsPerSecond + others.arrivalsPerSecond,
        };
      },
      leaseTtlSeconds: config.leaseTtlSeconds,
      podReadyTimeoutSeconds: config.podReadyTimeoutSeconds,
      orphanGraceMs: opts.orphanGraceMs,
      budget,
      renewLeader: () => this.elector?.renewSoon(),
      podName: () => podName(template),
      podTemplate: (name) =>
        buildSandboxPod(template, {
          namespace: config.namespace,
          name,
          // Without a pool token (api exec, replace recycling) nobody calls the exec server: a
          // random token keeps it closed (it refuses to start without one).
          execToken: config.poolToken
            ? podExecToken(config.poolToken, config.namespace, name)
            : randomBytes(32).toString("base64url"),
          image: config.sandboxImage,
          runtimeClassName: config.runtimeClassName,
          execMode: config.execMode,
        }),
    });
    if (runController) {
      this.elector = new LeaderElector({
        clients: opts.clients,
        bus: this.bus,
        log: this.log,
        namespace: config.namespace,
        identity: config.agentId,
        leaseDurationSeconds: config.leaderLeaseSeconds,
        note: budget,
        onStartedLeading: () => {
          this.demandReader.start();
          this.controller.start();
        },
        onStoppedLeading: () => {
          this.demandReader.stop();
          void this.controller.stop();
        },
      });
    }
  }

  static async start(opts: AgentPoolOptions): Promise<Result<AgentPool>> {
    const template = loadPodTemplate(opts.config.podTemplatePath);
    if (!template.ok) return template;
    let pool: AgentPool;
    try {
      pool = new AgentPool(opts.config, opts, template.value);
    } catch (e) {
      return err(new AppError("internal", (e as Error).message));
    }
    const synced = await pool.caches.start();
    if (!synced) {
      await pool.caches.stop();
      return err(new AppError("agent_unavailable", "pod/lease caches did not sync from the API server"));
    }
    pool.elector?.start();
    pool.demandPublisher.start();
    return ok(pool);
  }

  get isLeader(): boolean {
    return this.elector?.isLeader ?? false;
  }

  async close(): Promise<void> {
    this.recentExecutions.stop();
    this.runningProcesses.stop();
    this.demandReader.stop();
    await this.demandPublisher.withdraw();
    await this.manager.shutdown();
    await this.elector?.stop();
    await this.controller.stop();
    await this.caches.stop();
    this.endings.stop();
  }

  snapshot(): PoolSnapshot {
    const leases = new Map(this.caches.leases.list().map((l) => [l.metadata?.name ?? "", l]));
    const pods = this.caches.pods
      .list()
      .map((p) => podSnapshot(p, leases.get(p.metadata?.name ?? "")))
      .sort((a, b) => a.name.localeCompare(b.name));
    const s = this.manager.stats;
    const waiters = this.manager.queueWaiters();
    return {
      region: this.config.region,
      agentId: this.config.agentId,
      at: new Date().toISOString(),
      poolSize: this.controller.size,
      recycle: this.config.recycle,
      pods,
      queue: { depth: waiters.length, waiters },
      totals: {
        acquisitions: s.acquisitions,
        conflicts: s.conflicts,
        queueTimeouts: s.queueTimeouts,
        acquireP50Ms: s.percentile(50),
        acquireP99Ms: s.percentile(99),
      },
      executions: this.recentExecutions.list(),
      processes: this.runningProcesses.list(),
    };
  }
}

export function podState(pod: V1Pod, lease: V1Lease | undefined): PodState {
  if (isTerminating(pod)) return "recycling";
  if (isFinished(pod)) return "failed";
  if (lease && holderOf(lease)) return "leased";
  if (isPodReady(pod) && lease) return "ready";
  return "starting";
}

function podSnapshot(pod: V1Pod, lease: V1Lease | undefined): PodSnapshot {
  const holder = lease ? parseHolder(holderOf(lease)) : null;
  const held = lease && holderOf(lease);
  return {
    name: pod.metadata?.name ?? "",
    state: podState(pod, lease),
    podIP: pod.status?.podIP ?? null,
    holder: holder
      ? { agentId: holder.agentId, requestId: holder.requestId, tenant: (lease && tenantOf(lease)) ?? "" }
      : null,
    acquiredAt: held ? microTimeString(lease.spec?.acquireTime as Date | string | undefined) : null,
    renewedAt: held ? microTimeString(lease.spec?.renewTime as Date | string | undefined) : null,
    leaseDurationSeconds: lease?.spec?.leaseDurationSeconds || null,
    transitions: lease?.spec?.leaseTransitions ?? 0,
  };
}
