import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  type V1Pod,
} from "@kubernetes/client-node";
import { eventRecorder } from "../events.ts";
import { allocatable, misfits, podRequests, requested, unschedulableMessage } from "./fit.ts";

const API_TIMEOUT_MS = 10_000;
const RESYNC_MS = 2_000;
const INFORMER_BACKOFF_MAX_MS = 30_000;

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export interface SchedulerOptions {
  kubeConfig: KubeConfig;
  /** Only pods with this spec.schedulerName (default "default-scheduler", as kube-scheduler). */
  schedulerName?: string;
  log?: (msg: string) => void;
}

export interface Scheduler {
  close(): Promise<void>;
}

/** Why a node takes no pods at all, in kube-scheduler's words; undefined when it is schedulable. */
function nodeUnavailable(node: V1Node): string | undefined {
  if (node.spec?.unschedulable) return "node(s) were unschedulable";
  const ready = node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  return ready ? undefined : "node(s) had untolerated taint {node.kubernetes.io/not-ready: }";
}

function pending(pod: V1Pod, schedulerName: string): boolean {
  if (pod.spec?.nodeName || pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return false;
  return (pod.spec?.schedulerName ?? "default-scheduler") === schedulerName;
}

/**
 * A small scheduler, like kube-scheduler a client of the public API only: it watches pods with
 * no node and binds each (`pods/binding`) to a Ready, schedulable node whose allocatable CPU,
 * memory and pod count still hold the pod's requests — the one with the fewest pods, so pods
 * spread. A pod that fits nowhere stays Pending with `PodScheduled=False/Unschedulable` and a
 * FailedScheduling event, both with kube-scheduler's message, and is retried whenever a pod or
 * node changes. Pods are placed one at a time, oldest first, so two never take the same room.
 * No affinity, taints or preemption: enough for devcluster, and a kubelet with a node identity
 * never has to bind.
 */
export async function startScheduler(opts: SchedulerOptions): Promise<Scheduler> {
  const log = opts.log ?? (() => {});
  const name = opts.schedulerName ?? "default-scheduler";
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const record = eventRecorder(core, { component: name }, log);
  /** Bound by us, until the informer shows the binding: their requests already hold room. */
  const assumed = new Map<string, { node: string; pod: V1Pod }>();
  let closed = false;

  const nodes = makeInformer<V1Node>(opts.kubeConfig, "/api/v1/nodes", () => core.listNode());
  // All pods (client-node's informer takes no field selector): bound ones count against their node.
  const pods = makeInformer<V1Pod>(opts.kubeConfig, "/api/v1/pods", () => core.listPodForAllNamespaces());

  const podsOn = (): Map<string, V1Pod[]> => {
    const byNode = new Map<string, V1Pod[]>();
    const add = (node: string, p: V1Pod) => byNode.set(node, [...(byNode.get(node) ?? []), p]);
    const seen = new Set<string>();
    for (const p of pods.list()) {
      seen.add(p.metadata?.uid ?? "");
      if (p.spec?.nodeName) add(p.spec.nodeName, p);
    }
    for (const [uid, a] of assumed) {
      const current = pods.list().find((p) => p.metadata?.uid === uid);
      if (!seen.has(uid) || current?.spec?.nodeName) assumed.delete(uid);
      else add(a.node, a.pod);
    }
    return byNode;
  };

  const markUnschedulable = async (pod: V1Pod, message: string): Promise<void> => {
    const { name: podName = "", namespace = "default" } = pod.metadata ?? {};
    const conditions = pod.status?.conditions ?? [];
    const was = conditions.find((c) => c.type === "PodScheduled");
    if (was?.status === "False" && was.reason === "Unschedulable" && was.message === message) return;
    // As kube-scheduler writes it: lastProbeTime null (client-node's type has no null).
    const condition = {
      type: "PodScheduled",
      status: "False",
      reason: "Unschedulable",
      message,
      lastProbeTime: null,
      lastTransitionTime: was?.status === "False" ? was.lastTransitionTime : new Date(),
    };
    const body = {
      status: { conditions: [...conditions.filter((c) => c.type !== "PodScheduled"), condition] },
    };
    try {
      await withTimeout(core.patchNamespacedPodStatus({ name: podName, namespace, body }, mergePatch));
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 404))
        log(`marking ${namespace}/${podName} unschedulable failed: ${(err as Error).message}`);
      return;
    }
    record(pod, { type: "Warning", reason: "FailedScheduling", message });
    log(`${namespace}/${podName} is unschedulable: ${message}`);
  };

  const scheduleOne = async (pod: V1Pod): Promise<void> => {
    const uid = pod.metadata?.uid ?? "";
    const { name: podName = "", namespace = "default" } = pod.metadata ?? {};
    if (closed || assumed.has(uid) || !pending(pod, name)) return;
    const all = nodes.list();
    if (all.length === 0) return; // retried once a node registers
    const want = podRequests(pod);
    const byNode = podsOn();
    const reasons: string[][] = [];
    const fits: Array<{ node: string; load: number }> = [];
    for (const n of all) {
      const nodeName = n.metadata?.name ?? "";
      const down = nodeUnavailable(n);
      const onNode = byNode.get(nodeName) ?? [];
      const why = down ? [down] : misfits(want, requested(onNode), allocatable(n));
      if (why.length === 0) fits.push({ node: nodeName, load: onNode.length });
      else reasons.push(why);
    }
    const target = fits.sort((a, b) => a.load - b.load)[0]?.node;
    if (target === undefined) {
      await markUnschedulable(pod, unschedulableMessage(all.length, reasons));
      return;
    }
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
      assumed.set(uid, { node: target, pod });
      record(pod, {
        type: "Normal",
        reason: "Scheduled",
        message: `Successfully assigned ${namespace}/${podName} to ${target}`,
      });
      log(`bound ${namespace}/${podName} to ${target}`);
    } catch (err) {
      // 409: already bound (by us or another scheduler); 404: gone. Anything else: next resync.
      if (!(err instanceof ApiException && (err.code === 409 || err.code === 404))) {
        log(`bind ${namespace}/${podName} failed: ${(err as Error).message}`);
      }
    }
  };

  // One pass at a time over every pending pod, oldest first; a change during a pass asks for another.
  let running = false;
  let again = false;
  const scheduleAll = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const queue = pods
          .list()
          .filter((p) => pending(p, name))
          .sort((a, b) => created(a) - created(b));
        for (const p of queue) {
          if (closed) return;
          await scheduleOne(p);
        }
      } while (again && !closed);
    } finally {
      running = false;
    }
  };
  const kick = () => void scheduleAll().catch((err: unknown) => log(`scheduling failed: ${String(err)}`));

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
  // A pod added, changed or gone, or a node changed, may make room or need it: a new pass.
  pods.on("add", kick);
  pods.on("update", kick);
  pods.on("delete", (p) => {
    assumed.delete(p.metadata?.uid ?? "");
    kick();
  });
  nodes.on("add", kick);
  nodes.on("update", kick);
  await nodes.start();
  await pods.start();
  const resync = setInterval(kick, RESYNC_MS);
  resync.unref();

  return {
    close: async () => {
      closed = true;
      clearInterval(resync);
      await Promise.all([pods.stop().catch(() => {}), nodes.stop().catch(() => {})]);
    },
  };
}

function created(p: V1Pod): number {
  const t = p.metadata?.creationTimestamp;
  return t ? new Date(t).getTime() : 0;
}

function withTimeout<T>(p: Promise<T>, ms = API_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`API call timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
