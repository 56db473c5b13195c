import { randomBytes } from "node:crypto";
import { type V1Lease, type V1Pod, Watch } from "@kubernetes/client-node";
import { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { loadConfig } from "../../cluster-agent/config.ts";
import { HttpScrubber } from "../../cluster-agent/exec/scrubber.ts";
import { type KubeClients, makeClients } from "../../cluster-agent/k8s/client.ts";
import { POOL_LABEL_SELECTOR } from "../../cluster-agent/pool-state/labels.ts";
import { isPodReady, isPoolMember } from "../../cluster-agent/pool-state/pod-state.ts";
import type { DevClusterOptions } from "../../devcluster/devcluster.ts";
import type { PoolEvent } from "../../shared/api.ts";
import { TEST_RELAY_PUBLIC_KEYS } from "./agent-env.ts";
import { startTestCluster, type TestCluster } from "./devcluster.ts";
import { waitFor } from "./wait-for.ts";

export { waitFor };

/**
 * A devcluster with the real sandbox image and a sandbox namespace, for the lease/pool suites. The
 * pool token exists only here and in the agent's env: each pod gets its own derived token.
 */
export interface LeaseCluster {
  dc: TestCluster;
  namespace: string;
  clients: KubeClients;
  poolToken: string;
  kubeconfigPath: string;
  /** Env for an agent (harness process or loadConfig) against this cluster. */
  agentEnv(extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export async function startLeaseCluster(
  namespace = "pi-sandbox",
  /**
   * podPidsLimit: devcluster's default 1024; -1: none, a real kubelet's default. images: instead
   * of the sandbox image (e.g. a user's image for EXEC_MODE=pydantic-http).
   */
  opts: Pick<DevClusterOptions, "egressProxy" | "allocatable" | "podPidsLimit"> &
    Partial<Pick<DevClusterOptions, "images">> = {},
): Promise<LeaseCluster> {
  // The agent's own namespace too: the tenants' secrets and the egress CA live there.
  const dc = await startTestCluster({ namespaces: [namespace, `${namespace}-system`], ...opts });
  const clients = makeClients(dc.kubeConfig());
  const poolToken = randomBytes(16).toString("hex");
  return {
    dc,
    namespace,
    clients,
    poolToken,
    kubeconfigPath: dc.kubeconfigPath,
    agentEnv: (extra = {}) => ({
      KUBECONFIG: dc.kubeconfigPath,
      SANDBOX_NAMESPACE: namespace,
      SECRETS_NAMESPACE: `${namespace}-system`,
      POOL_TOKEN: poolToken,
      RELAY_PUBLIC_KEYS: TEST_RELAY_PUBLIC_KEYS,
      ...extra,
    }),
    close: () => dc.close(),
  };
}

/**
 * One agent's pool (caches, lease manager, leader election, controller) against this cluster,
 * configured through the real config module, with every bus event collected. The caller closes it.
 */
export async function startPool(
  c: LeaseCluster,
  env: Record<string, string>,
  opts: {
    orphanGraceMs?: number;
    /** Fault injection between the agent and the API server (e.g. a create whose answer is lost). */
    wrapClients?: (clients: KubeClients) => KubeClients;
  } = {},
): Promise<{ pool: AgentPool; events: PoolEvent[] }> {
  const cfg = loadConfig(c.agentEnv(env));
  if (!cfg.ok) throw cfg.error;
  const scrubber = cfg.value.recycle !== "replace" ? new HttpScrubber({ poolToken: c.poolToken }) : undefined;
  const r = await AgentPool.start({
    config: cfg.value,
    clients: (opts.wrapClients ?? ((k) => k))(makeClients(c.dc.kubeConfig())),
    ...(scrubber ? { scrubber } : {}),
    orphanGraceMs: opts.orphanGraceMs ?? 2_000,
  });
  if (!r.ok) throw r.error;
  const events: PoolEvent[] = [];
  r.value.bus.on((e) => events.push(e));
  return { pool: r.value, events };
}

export interface PoolView {
  pods: V1Pod[];
  leases: V1Lease[];
  /** Pods not terminating. */
  live: V1Pod[];
  /** Live, Ready pods whose Lease exists and is free. */
  readyFree: string[];
  held: V1Lease[];
  /** The pod list's resourceVersion: a watch from here misses nothing after this view. */
  podsResourceVersion: string;
}

/** Straight from the API (a list is fine in a test): what the pool looks like now. */
export async function poolView(c: LeaseCluster): Promise<PoolView> {
  const [pods, leases] = await Promise.all([
    c.clients.core.listNamespacedPod({ namespace: c.namespace, labelSelector: POOL_LABEL_SELECTOR }),
    c.clients.coordination.listNamespacedLease({
      namespace: c.namespace,
      labelSelector: POOL_LABEL_SELECTOR,
    }),
  ]);
  const leaseBy = new Map(leases.items.map((l) => [l.metadata?.name, l]));
  const live = pods.items.filter((p) => !p.metadata?.deletionTimestamp);
  return {
    pods: pods.items,
    leases: leases.items,
    live,
    readyFree: live
      .filter(
        (p) =>
          isPodReady(p) &&
          leaseBy.has(p.metadata?.name) &&
          !leaseBy.get(p.metadata?.name)?.spec?.holderIdentity,
      )
      .map((p) => p.metadata?.name ?? ""),
    held: leases.items.filter((l) => l.spec?.holderIdentity),
    podsResourceVersion: pods.metadata?.resourceVersion ?? "",
  };
}

/** Waits until exactly `n` live pods exist, all Ready with a free Lease, and no Lease is held or orphaned. */
export async function waitForSettledPool(c: LeaseCluster, n: number, timeoutMs: number): Promise<PoolView> {
  return await waitFor(
    `${n} ready pods with free leases`,
    async () => {
      const v = await poolView(c);
      return v.live.length === n && v.readyFree.length === n && v.held.length === 0 && v.leases.length === n
        ? v
        : undefined;
    },
    timeoutMs,
    200,
  );
}

/** Until `pool` (one agent's view) has `n` Ready pods free to hand out. */
export function waitForReadyPods(pool: AgentPool, n: number, timeoutMs = 60_000): Promise<unknown> {
  return waitFor(
    `${n} ready pods`,
    () => pool.snapshot().pods.filter((p) => p.state === "ready").length === n,
    timeoutMs,
  );
}

/**
 * The most pool pods the API server held at once that were neither Terminating nor finished (what
 * POOL_MAX_PODS caps), after every event of a watch from `view` (which it starts from), and the
 * pods added since (name, Date.now() when seen). Stop it with `stop()`; read them at any time.
 */
export async function watchPeakLivePods(
  c: LeaseCluster,
  view: PoolView,
): Promise<{
  readonly peak: number;
  readonly added: ReadonlyArray<{ name: string; at: number }>;
  stop(): void;
}> {
  const live = new Map<string, boolean>();
  const added: Array<{ name: string; at: number }> = [];
  let peak = 0;
  const count = () => {
    peak = Math.max(peak, [...live.values()].filter(Boolean).length);
  };
  const watch = await new Watch(c.dc.kubeConfig()).watch(
    `/api/v1/namespaces/${c.namespace}/pods`,
    { resourceVersion: view.podsResourceVersion, labelSelector: POOL_LABEL_SELECTOR },
    (type: string, pod: V1Pod) => {
      const name = pod.metadata?.name ?? "";
      if (type === "DELETED") live.delete(name);
      else live.set(name, isPoolMember(pod));
      if (type === "ADDED") added.push({ name, at: Date.now() });
      count();
    },
    () => {},
  );
  for (const p of view.pods)
    if (!live.has(p.metadata?.name ?? "")) live.set(p.metadata?.name ?? "", isPoolMember(p));
  count();
  return {
    get peak() {
      return peak;
    },
    added,
    stop: () => watch.abort(),
  };
}
