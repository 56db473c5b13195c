import { chmod, cp, mkdir, readdir, rm, stat } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import {
  ApiException,
  CoreV1Api,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import { eventRecorder } from "../events.ts";
import { checkCgroups, sweepStaleCgroups } from "./cgroups.ts";
import { makeRuntimeDirs } from "./container.ts";
import type { SecretReader } from "./env.ts";
import { startExecServer } from "./exec-server.ts";
import { IdRangeAllocator } from "./id-ranges.ts";
import { PodIPAllocator } from "./pod-ips.ts";
import type { Json } from "./pod-status.ts";
import { now } from "./pod-status.ts";
import { PodWorker } from "./pod-worker.ts";
import { ForwarderHost } from "./port-forward.ts";
import { quantityBytes, quantityMillis } from "./quantity.ts";
import type { ImageSpec, Kubelet, KubeletOptions } from "./types.ts";

const HOST_IP = "127.0.0.1";
const RESYNC_MS = 5_000;
const HEARTBEAT_MS = 20_000;
const INFORMER_BACKOFF_MAX_MS = 30_000;
const API_TIMEOUT_MS = 10_000;

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

const DEFAULT_POD_PIDS_LIMIT = 1024;
/** The kubelet's eviction manager runs every 10 s (evictionMonitoringPeriod). */
const DEFAULT_EVICTION_INTERVAL_MS = 10_000;
/** A real kubelet's default `--max-pods`. */
const MAX_PODS = "110";

type Resources = Record<string, string>;

/** Capacity is the machine; allocatable what `opts.allocatable` leaves of it (the scheduler fits into it). */
function nodeResources(allocatable: KubeletOptions["allocatable"]): {
  capacity: Resources;
  allocatable: Resources;
} {
  const capacity = {
    cpu: String(availableParallelism()),
    memory: `${Math.floor(totalmem() / 1024)}Ki`,
    pods: MAX_PODS,
  };
  return {
    capacity,
    allocatable: {
      ...capacity,
      ...(allocatable?.cpu === undefined ? {} : { cpu: allocatable.cpu }),
      ...(allocatable?.memory === undefined ? {} : { memory: allocatable.memory }),
    },
  };
}

/**
 * A process "kubelet": registers a Node and runs every pod bound to it (by a scheduler: the
 * kubelet never binds, as a node identity may not) as a runc container, reporting status through
 * the status subresource. Only the public Kubernetes API is used (through client-node), so it
 * runs against any apiserver.
 */
export async function startKubelet(opts: KubeletOptions): Promise<Kubelet> {
  const log = opts.log ?? (() => {});
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const nodeName = opts.nodeName;
  const maxGraceMs = (opts.maxGraceSeconds ?? 5) * 1000;
  const podsDir = join(opts.stateDir, "pods");
  await mkdir(podsDir, { recursive: true });
  const ips = new PodIPAllocator(opts.podIPBase ?? "127.0.1");
  const idRanges = new IdRangeAllocator();
  const cgroups = checkCgroups();
  if (cgroups.warning) {
    log(`WARNING: resource limits are NOT enforced on this machine: ${cgroups.warning}`);
  }
  const swept = sweepStaleCgroups(cgroups.mode);
  if (swept > 0) log(`removed ${swept} container cgroups left by an earlier kubelet`);
  const runtime = await makeRuntimeDirs();
  const images = await snapshotImages(opts.images, runtime.images);

  const workers = new Map<string, PodWorker>();
  const finalizing = new Set<string>();
  let closed = false;

  const readSecret: SecretReader = async (namespace, name) => {
    try {
      const s = await withTimeout(core.readNamespacedSecret({ name, namespace }));
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, "base64").toString("utf8");
      for (const [k, v] of Object.entries(s.stringData ?? {})) out[k] = v;
      return out;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    }
  };
  const patchStatus = async (namespace: string, name: string, status: Json): Promise<boolean> => {
    try {
      await withTimeout(core.patchNamespacedPodStatus({ name, namespace, body: { status } }, mergePatch));
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return false;
      throw err;
    }
  };

  const exec = await startExecServer({
    tls: opts.tls,
    ...(opts.execProtocols ? { protocols: opts.execProtocols } : {}),
    scratchDir: runtime.root,
    log,
    logs: (namespace, pod, container) => {
      const matches = [...workers.values()].filter((w) => w.namespace === namespace && w.name === pod);
      const w = matches.find((m) => m.sandbox?.running) ?? matches[0];
      if (!w) return { ok: false, message: `pod ${namespace}/${pod} is not on node ${nodeName}` };
      if (w.container?.name !== container || !w.logPath)
        return { ok: false, message: `container not found ("${container}")` };
      return { ok: true, path: w.logPath, running: () => w.sandbox?.running === true };
    },
    lookup: (namespace, pod, container) => {
      // A pod being replaced under the same name may briefly have two workers: prefer the live one.
      const matches = [...workers.values()].filter((w) => w.namespace === namespace && w.name === pod);
      const w = matches.find((m) => m.sandbox?.running) ?? matches[0];
      if (!w) return { ok: false, message: `pod ${namespace}/${pod} is not running on node ${nodeName}` };
      if (w.container?.name !== container)
        return { ok: false, message: `container not found ("${container}")` };
      const sb = w.sandbox;
      if (!sb?.running || sb.initPid === undefined) {
        return { ok: false, message: `container "${container}" in pod ${namespace}/${pod} is not running` };
      }
      return { ok: true, sandbox: sb };
    },
  });
  const endpoint = `https://${HOST_IP}:${exec.port}`;

  if (opts.allocatable?.cpu !== undefined && quantityMillis(opts.allocatable.cpu) === undefined)
    throw new Error(`allocatable cpu: not a CPU quantity: ${opts.allocatable.cpu}`);
  if (opts.allocatable?.memory !== undefined && quantityBytes(opts.allocatable.memory) === undefined)
    throw new Error(`allocatable memory: not a memory quantity: ${opts.allocatable.memory}`);
  const node: NodeFacts = {
    name: nodeName,
    port: exec.port,
    readySince: now(),
    ...nodeResources(opts.allocatable),
  };
  await registerNode(core, node, log);
  const heartbeat = setInterval(() => {
    void patchNodeStatus(core, node).catch((err: unknown) => {
      log(`node heartbeat failed: ${(err as Error).message}`);
    });
  }, HEARTBEAT_MS);
  heartbeat.unref();

  const forwarders = new ForwarderHost(log);
  const ctx = {
    nodeName,
    hostIP: HOST_IP,
    images,
    podsDir,
    ips,
    idRanges,
    runtime,
    podPidsLimit: opts.podPidsLimit ?? DEFAULT_POD_PIDS_LIMIT,
    egressProxy: opts.egressProxy,
    forwarders,
    readSecret,
    patchStatus,
    record: eventRecorder(core, { component: "kubelet", host: nodeName }, log),
    log,
    maxGraceMs,
    evictionIntervalMs: opts.evictionIntervalMs ?? DEFAULT_EVICTION_INTERVAL_MS,
  };

  /** Stop the sandbox, then remove the object (gracePeriodSeconds=0, guarded by the uid). */
  const finalize = async (pod: V1Pod): Promise<void> => {
    const uid = pod.metadata?.uid ?? "";
    const { name = "", namespace = "default" } = pod.metadata ?? {};
    if (finalizing.has(uid)) return;
    finalizing.add(uid);
    try {
      const graceMs = Math.min(maxGraceMs, (pod.metadata?.deletionGracePeriodSeconds ?? 30) * 1000);
      const w = workers.get(uid);
      if (w) await w.stop(graceMs);
      else await rm(join(podsDir, uid), { recursive: true, force: true });
      workers.delete(uid);
      if (closed) return;
      await withTimeout(
        core.deleteNamespacedPod({
          name,
          namespace,
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid } },
        }),
      ).catch((err: unknown) => {
        // 404: already gone; 409: a new pod took the name (uid precondition) — both are fine.
        if (err instanceof ApiException && (err.code === 404 || err.code === 409)) return;
        log(`delete ${namespace}/${name} failed: ${(err as Error).message}`);
        finalizing.delete(uid); // retried on the next resync
      });
    } catch (err) {
      log(`finalize ${namespace}/${name} failed: ${(err as Error).message}`);
      finalizing.delete(uid);
    }
  };

  const onPod = (pod: V1Pod): void => {
    if (closed) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    // Unscheduled pods are the scheduler's; pods of other nodes are theirs.
    if (pod.spec?.nodeName !== nodeName) return;
    if (pod.metadata?.deletionTimestamp) {
      void finalize(pod);
      return;
    }
    const w = workers.get(uid);
    if (w) {
      w.update(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") return;
    log(`starting ${pod.metadata?.namespace}/${pod.metadata?.name}`);
    workers.set(uid, new PodWorker(pod, ctx));
  };

  /** A pod removed from the API without our final delete (force delete): kill it now. */
  const onGone = (pod: V1Pod): void => {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const w = workers.get(uid);
    workers.delete(uid);
    if (!w) {
      finalizing.delete(uid);
      return;
    }
    void w.stop(0).finally(() => finalizing.delete(uid));
  };

  const informer = makeInformer<V1Pod>(opts.kubeConfig, "/api/v1/pods", () => core.listPodForAllNamespaces());
  informer.on("add", onPod);
  informer.on("update", onPod);
  informer.on("delete", onGone);
  let backoffMs = 500;
  let restartTimer: NodeJS.Timeout | undefined;
  informer.on("connect", () => {
    backoffMs = 500;
  });
  informer.on("error", (err: unknown) => {
    if (closed) return;
    log(
      `pod watch failed (${(err as Error | undefined)?.message ?? String(err)}); restarting in ${backoffMs} ms`,
    );
    restartTimer = setTimeout(() => {
      if (!closed) void informer.start().catch(() => {});
    }, backoffMs);
    backoffMs = Math.min(INFORMER_BACKOFF_MAX_MS, backoffMs * 2);
  });
  await informer.start();

  // Level-triggered safety net: retries failed deletes and catches anything missed.
  const resync = setInterval(() => {
    for (const pod of informer.list()) onPod(pod);
  }, RESYNC_MS);
  resync.unref();

  return {
    endpoint,
    close: async () => {
      if (closed) return;
      closed = true;
      clearInterval(resync);
      clearInterval(heartbeat);
      if (restartTimer) clearTimeout(restartTimer);
      await informer.stop().catch(() => {});
      // Exec sockets first: a kubelet that goes away drops them without a status frame.
      await exec.close();
      await Promise.all([...workers.values()].map((w) => w.stop(0)));
      workers.clear();
      forwarders.close();
      ips.releaseAll();
      idRanges.releaseAll();
      await rm(podsDir, { recursive: true, force: true });
      await rm(runtime.root, { recursive: true, force: true });
    },
  };
}

interface NodeFacts {
  name: string;
  port: number;
  readySince: string;
  capacity: Resources;
  allocatable: Resources;
}

async function registerNode(core: CoreV1Api, node: NodeFacts, log: (m: string) => void) {
  const nodeName = node.name;
  const status = nodeStatus(node);
  try {
    await withTimeout(
      core.createNode({
        body: {
          apiVersion: "v1",
          kind: "Node",
          metadata: {
            name: nodeName,
            labels: { "kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux" },
          },
          status: status as never,
        },
      }),
    );
  } catch (err) {
    if (!(err instanceof ApiException && err.code === 409)) throw err;
    log(`node ${nodeName} exists; updating its status`);
  }
  // A real apiserver may drop status on create: always set it through the status subresource.
  await patchNodeStatus(core, node);
}

function patchNodeStatus(core: CoreV1Api, node: NodeFacts): Promise<unknown> {
  const body = { status: nodeStatus(node) };
  return withTimeout(core.patchNodeStatus({ name: node.name, body }, mergePatch));
}

function nodeStatus({ port, readySince, capacity, allocatable }: NodeFacts): Json {
  return {
    capacity,
    allocatable,
    addresses: [
      { type: "InternalIP", address: HOST_IP },
      { type: "Hostname", address: "localhost" },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: port } },
    conditions: [
      {
        type: "Ready",
        status: "True",
        reason: "KubeletReady",
        message: "devcluster process kubelet is posting ready status",
        lastHeartbeatTime: now(),
        lastTransitionTime: readySince,
      },
    ],
    nodeInfo: {
      kubeletVersion: "v1.26.0-devcluster",
      containerRuntimeVersion: "runc://1.1",
      operatingSystem: "linux",
      architecture: process.arch === "x64" ? "amd64" : process.arch,
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

/**
 * Copies every image directory into the runtime's directory once (as a snapshotter unpacks a
 * layer): the containers' host ids can read it there, and the host cannot change it under them.
 */
async function snapshotImages(
  images: Record<string, ImageSpec>,
  dir: string,
): Promise<Record<string, ImageSpec>> {
  const out: Record<string, ImageSpec> = {};
  let n = 0;
  for (const [repo, image] of Object.entries(images)) {
    const binds: ImageSpec["binds"] = [];
    for (const b of image.binds) {
      const snap = join(dir, String(n++));
      await cp(b.host, snap, { recursive: true, dereference: true });
      await chmodTree(snap);
      binds.push({ host: snap, container: b.container });
    }
    out[repo] = { binds };
  }
  return out;
}

/**
 * Readable by everyone (files keep their execute bits): an image is public inside its containers.
 * An execute-only file (executable, not readable by others) stays 0111, as an image layer keeps
 * it: exec'ing it leaves the process non-dumpable (the exec server's node relies on this).
 */
async function chmodTree(path: string): Promise<void> {
  const st = await stat(path);
  if (st.isDirectory()) {
    await chmod(path, 0o755);
    for (const e of await readdir(path)) await chmodTree(join(path, e));
  } else if ((st.mode & 0o005) === 0o001) {
    await chmod(path, 0o111);
  } else {
    await chmod(path, st.mode & 0o111 ? 0o755 : 0o644);
  }
}
