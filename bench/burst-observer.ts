import { readFileSync, statSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { type V1Pod, Watch } from "@kubernetes/client-node";
import { LEADER_LEASE_NAME, POOL_LABEL_SELECTOR } from "../cluster-agent/pool-state/labels.ts";
import { isFinished, isPodReady, isTerminating } from "../cluster-agent/pool-state/pod-state.ts";
import type { Stack } from "../devstack/stack.ts";
import { summarize } from "./stats.ts";

/** What the control plane and the pods did during one burst, seen from devcluster's side. */
export interface BurstObservation {
  /** Pods created during the burst. */
  podsStarted: number;
  /** From the burst's start until the first pod created during it was Ready (NaN: none). */
  firstNewReadyMs: number;
  /** Most pods at once that were neither Terminating nor finished: what POOL_MAX_PODS caps. */
  peakLive: number;
  /** Most Terminating pods at once (deleted, their containers still stopping). */
  peakTerminating: number;
  /** GET of the leader Lease every 100 ms against devcluster's API server (the leader's own read). */
  api: { n: number; p50Ms: number; p99Ms: number; maxMs: number; failed: number };
  /**
   * Event-loop delay of devcluster's process (API server, scheduler and kubelet share it, and this
   * bench's client): how much of the API latency is the kubelet's work holding the loop.
   */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Failures the agents logged during the burst, by message. */
  agentFailures: Record<string, number>;
}

/** The agents' log lines that say the control plane was starved. */
const FAILURES = [
  "renew leader lease failed",
  "publishing queue demand failed",
  "create pod got no answer",
  "create lease failed",
  "reading queue demand failed",
];

/** Starts watching pods, probing the API and the event loop; `stop()` returns what it saw. */
export async function observeBurst(stack: Stack): Promise<{ stop(): Promise<BurstObservation> }> {
  const t0 = performance.now();
  const ns = stack.namespaceOf(stack.regions[0] ?? "");
  const logOffsets = new Map(stack.agents.map((a) => [a.logFile, sizeOf(a.logFile)]));

  const pods = new Map<string, V1Pod>();
  const created = new Set<string>();
  let firstNewReadyMs = Number.NaN;
  let peakLive = 0;
  let peakTerminating = 0;
  const count = () => {
    let live = 0;
    let terminating = 0;
    for (const p of pods.values()) {
      if (isTerminating(p)) terminating++;
      else if (!isFinished(p)) live++;
    }
    peakLive = Math.max(peakLive, live);
    peakTerminating = Math.max(peakTerminating, terminating);
  };
  const list = JSON.parse(
    (
      await stack.cluster.request(
        "GET",
        `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(POOL_LABEL_SELECTOR)}`,
      )
    ).text,
  ) as { items: V1Pod[]; metadata: { resourceVersion: string } };
  for (const p of list.items) pods.set(p.metadata?.name ?? "", p);
  count();
  const watch = await new Watch(stack.cluster.kubeConfig()).watch(
    `/api/v1/namespaces/${ns}/pods`,
    { labelSelector: POOL_LABEL_SELECTOR, resourceVersion: list.metadata.resourceVersion },
    (type: string, pod: V1Pod) => {
      const name = pod.metadata?.name ?? "";
      if (type === "ADDED" && !pods.has(name)) created.add(name);
      if (type === "DELETED") pods.delete(name);
      else pods.set(name, pod);
      if (Number.isNaN(firstNewReadyMs) && created.has(name) && isPodReady(pod))
        firstNewReadyMs = performance.now() - t0;
      count();
    },
    () => {},
  );

  const apiMs: number[] = [];
  let apiFailed = 0;
  let probing = true;
  const probe = (async () => {
    const path = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${LEADER_LEASE_NAME}`;
    while (probing) {
      const start = performance.now();
      try {
        const r = await stack.cluster.request("GET", path);
        if (r.status === 200) apiMs.push(performance.now() - start);
        else apiFailed++;
      } catch {
        apiFailed++;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  return {
    async stop() {
      probing = false;
      await probe;
      loop.disable();
      watch.abort();
      const api = summarize(apiMs);
      const agentFailures: Record<string, number> = {};
      for (const [file, from] of logOffsets) {
        const text = readFrom(file, from);
        for (const what of FAILURES) {
          const n = text.split(what).length - 1;
          if (n > 0) agentFailures[what] = (agentFailures[what] ?? 0) + n;
        }
      }
      return {
        podsStarted: created.size,
        firstNewReadyMs,
        peakLive,
        peakTerminating,
        api: {
          n: api.n,
          p50Ms: api.p50,
          p99Ms: api.p99,
          maxMs: api.max,
          failed: apiFailed,
        },
        loopDelayP99Ms: loop.percentile(99) / 1e6,
        loopDelayMaxMs: loop.max / 1e6,
        agentFailures,
      };
    },
  };
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readFrom(file: string, offset: number): string {
  try {
    return readFileSync(file).subarray(offset).toString("utf8");
  } catch {
    return "";
  }
}
