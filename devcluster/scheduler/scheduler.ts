import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";

const API_TIMEOUT_MS = 10_000;
const RESYNC_MS = 2_000;
const INFORMER_BACKOFF_MAX_MS = 30_000;

export interface SchedulerOptions {
  kubeConfig: KubeConfig;
  /** Only pods with this spec.schedulerName (default "default-scheduler", as kube-scheduler). */
  schedulerName?: string;
  log?: (msg: string) => void;
}

export interface Scheduler {
  close(): Promise<void>;
}

function ready(node: V1Node): boolean {
  if (node.spec?.unschedulable) return false;
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/**
 * A small scheduler, like kube-scheduler a client of the public API only: it watches pods with
 * no node and binds each (`pods/binding`) to a Ready, schedulable node — the one with the fewest
 * pods bound by this scheduler, so pods spread. No resource fitting, affinity or taints: enough
 * for devcluster, and a kubelet with a node identity never has to bind.
 */
export async function startScheduler(opts: SchedulerOptions): Promise<Scheduler> {
  const log = opts.log ?? (() => {});
  const name = opts.schedulerName ?? "default-scheduler";
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const inFlight = new Set<string>();
  const load = new Map<string, number>();
  let closed = false;

  const nodes = makeInformer<V1Node>(opts.kubeConfig, "/api/v1/nodes", () => core.listNode());
  // All pods (client-node's informer takes no field selector); bound ones are skipped.
  const pods = makeInformer<V1Pod>(opts.kubeConfig, "/api/v1/pods", () => core.listPodForAllNamespaces());

  const bind = async (pod: V1Pod): Promise<void> => {
    const uid = pod.metadata?.uid ?? "";
    const { name: podName = "", namespace = "default" } = pod.metadata ?? {};
    if (closed || inFlight.has(uid) || pod.spec?.nodeName || pod.metadata?.deletionTimestamp) return;
    if ((pod.spec?.schedulerName ?? "default-scheduler") !== name) return;
    const candidates = nodes.list().filter(ready);
    if (candidates.length === 0) return; // retried on the next resync, once a node is Ready
    candidates.sort(
      (a, b) => (load.get(a.metadata?.name ?? "") ?? 0) - (load.get(b.metadata?.name ?? "") ?? 0),
    );
    const target = candidates[0]?.metadata?.name ?? "";
    inFlight.add(uid);
    try {
      await withTimeout(
        core.createNamespacedPodBinding({
          name: podName,
          namespace,
          body: {
            apiVersion: "v1",
            kind: "Binding",
            metadata: { name: podName, uid },
            target: { kind: "Node", name: target },
          },
        }),
      );
      load.set(target, (load.get(target) ?? 0) + 1);
      log(`bound ${namespace}/${podName} to ${target}`);
    } catch (err) {
      // 409: already bound (by us or another scheduler); 404: gone. Anything else: next resync.
      if (!(err instanceof ApiException && (err.code === 409 || err.code === 404))) {
        log(`bind ${namespace}/${podName} failed: ${(err as Error).message}`);
      }
    } finally {
      inFlight.delete(uid);
    }
  };

  const restartOnError = (
    inf: { start(): Promise<void>; on(e: "error" | "connect", f: (e?: unknown) => void): void },
    what: string,
  ) => {
    let backoffMs = 500;
    inf.on("connect", () => {
      backoffMs = 500;
    });
    inf.on("error", (err: unknown) => {
      if (closed) return;
      log(
        `${what} watch failed (${(err as Error | undefined)?.message ?? String(err)}); restarting in ${backoffMs} ms`,
      );
      setTimeout(() => {
        if (!closed) void inf.start().catch(() => {});
      }, backoffMs).unref();
      backoffMs = Math.min(INFORMER_BACKOFF_MAX_MS, backoffMs * 2);
    });
  };
  restartOnError(nodes, "node");
  restartOnError(pods, "pod");
  pods.on("add", (p) => void bind(p));
  pods.on("update", (p) => void bind(p));
  nodes.on("update", () => {
    for (const p of pods.list()) void bind(p);
  });
  await nodes.start();
  await pods.start();
  const resync = setInterval(() => {
    for (const p of pods.list()) void bind(p);
  }, RESYNC_MS);
  resync.unref();

  return {
    close: async () => {
      closed = true;
      clearInterval(resync);
      await Promise.all([pods.stop().catch(() => {}), nodes.stop().catch(() => {})]);
    },
  };
}

function withTimeout<T>(p: Promise<T>, ms = API_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`API call timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
