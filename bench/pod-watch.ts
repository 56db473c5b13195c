import { CoreV1Api, type KubeConfig, type V1Pod, Watch } from "@kubernetes/client-node";

/**
 * Watches a namespace's pods from outside the agents and times the replace recycle as the cluster
 * sees it: a pod's deletion starting, it being gone, a new pod appearing and turning Ready.
 */
export interface PodLifecycle {
  /** deletion seen (deletionTimestamp or DELETED) → DELETED. */
  deleteToGoneMs(): number[];
  /** ADDED (pods new since start) → Ready=True. */
  createToReadyMs(): number[];
  /** k-th deletion start → k-th new pod Ready: the whole replace cost of one pod. */
  recycleMs(): number[];
  /** Pods Ready=True and not being deleted right now. */
  readyCount(): number;
  stop(): void;
}

const isReady = (p: V1Pod) =>
  !p.metadata?.deletionTimestamp &&
  (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");

export async function watchPods(kc: KubeConfig, namespace: string): Promise<PodLifecycle> {
  const core = kc.makeApiClient(CoreV1Api);
  const list = await core.listNamespacedPod({ namespace });
  const initial = new Set(list.items.map((p) => p.metadata?.name ?? ""));
  const created = new Map<string, number>();
  const ready = new Map<string, number>();
  const deleting = new Map<string, number>();
  const gone = new Map<string, number>();
  const current = new Map<string, V1Pod>(list.items.map((p) => [p.metadata?.name ?? "", p]));
  let stopped = false;
  let controller: AbortController | undefined;

  const onEvent = (phase: string, pod: V1Pod) => {
    const now = performance.now();
    const name = pod.metadata?.name;
    if (!name) return;
    if (phase === "ADDED" && !initial.has(name) && !created.has(name)) created.set(name, now);
    if (phase === "DELETED") {
      current.delete(name);
      if (!deleting.has(name)) deleting.set(name, now);
      gone.set(name, now);
      return;
    }
    current.set(name, pod);
    if (pod.metadata?.deletionTimestamp && !deleting.has(name)) deleting.set(name, now);
    if (created.has(name) && isReady(pod) && !ready.has(name)) ready.set(name, now);
  };

  const start = async (resourceVersion: string | undefined) => {
    if (stopped) return;
    controller = await new Watch(kc).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      resourceVersion ? { resourceVersion, allowWatchBookmarks: false } : {},
      (phase, obj) => onEvent(phase, obj as V1Pod),
      () => {
        // The server ended the watch: carry on from the current state (a re-list would re-add pods as ADDED).
        if (!stopped) setTimeout(() => void start(undefined).catch(() => undefined), 200);
      },
    );
  };
  await start(list.metadata?.resourceVersion);

  return {
    deleteToGoneMs: () =>
      [...gone].flatMap(([n, t]) => (deleting.has(n) ? [t - (deleting.get(n) ?? t)] : [])),
    createToReadyMs: () => [...ready].map(([n, t]) => t - (created.get(n) ?? t)),
    recycleMs: () => {
      const d = [...deleting.values()].sort((a, b) => a - b);
      const r = [...ready.values()].sort((a, b) => a - b);
      return pairInOrder(d, r);
    },
    readyCount: () => [...current.values()].filter(isReady).length,
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}

/**
 * Pairs each start with the first unused end not before it (both sorted ascending) and returns
 * end − start per pair: the k-th deletion is refilled by the next pod that becomes Ready.
 */
export function pairInOrder(starts: readonly number[], ends: readonly number[]): number[] {
  const out: number[] = [];
  let j = 0;
  for (const s of starts) {
    while (j < ends.length && (ends[j] as number) < s) j++;
    if (j >= ends.length) break;
    out.push((ends[j] as number) - s);
    j++;
  }
  return out;
}
