import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { Container, makeRuntimeDirs } from "../devcluster/kubelet/container.ts";
import { IdRangeAllocator } from "../devcluster/kubelet/id-ranges.ts";
import { startSandboxPodCluster } from "../devstack/fixtures/sandbox-pod.ts";
import { machineCpuMs, processTreeCpuMs } from "./machine-cpu.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";

const PODS = 15;
const FLOOR_RUNS = 15;

/**
 * `pod_start`: a sandbox pod (the repository's template, the real exec server) from create to
 * Ready through devcluster — API server, scheduler bind, kubelet, runc, port forwarder, readiness
 * probe — one at a time (the cost replace mode pays per command). Floor: one `runc run` of
 * `/bin/true` with the same kind of OCI spec (namespaces, id mapping, seccomp, cgroups), started
 * and exited.
 */
/** Start-up figures of `n` sandbox pods started one after another on a devcluster of their own. */
export interface PodStarts {
  samples: number[];
  /** The whole machine's CPU (/proc/stat) per start-up and deletion. */
  machineMsPerPod: number;
  /** The part in devcluster's own process (this one: API server and scheduler; the kubelet has its own). */
  devclusterMsPerPod: number;
  /**
   * devcluster's process and every process it started and reaped for the pod (runc, the
   * container, the port forwarder): a pod's cost without the rest of a shared machine's work.
   */
  treeMsPerPod: number;
}

export async function measurePodStarts(name: string, n: number): Promise<PodStarts> {
  // The kubelet in a process of its own, as every stack (`npm start`, the bench's) runs it.
  const c = await startSandboxPodCluster(name, { kubeletProcess: true });
  const samples: number[] = [];
  try {
    // One pod first, so the figures below exclude loading the kubelet's code paths.
    await c.createPod("start-warm");
    await c.deletePod("start-warm", { graceful: true });
    const machine0 = machineCpuMs();
    const tree0 = processTreeCpuMs();
    const self0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await c.createPod(`start-${i}`);
      samples.push(performance.now() - t0);
      // Deleted as the pool deletes a used pod (graceful, the template's grace period), which each
      // replace command pays. A forced deletion (grace 0, as this did until 2026-12-07) skips the
      // termination's work (~20 ms of machine CPU) and loses the exec server's CPU from the
      // process tree: the kubelet SIGKILLs the container's init, the kernel kills the rest of its
      // PID namespace, and no live parent waits for them (98 ms per pod by the tree; 175 graceful).
      await c.deletePod(`start-${i}`, { graceful: true });
    }
    // Until the last container's cleanup (runc delete, cgroup removal) has run too.
    await new Promise((r) => setTimeout(r, 500));
    const self = process.cpuUsage(self0);
    return {
      samples,
      machineMsPerPod: (machineCpuMs() - machine0) / n,
      devclusterMsPerPod: (self.user + self.system) / 1000 / n,
      treeMsPerPod: (processTreeCpuMs() - tree0) / n,
    };
  } finally {
    await c.close();
  }
}

/**
 * `pod_start`: a sandbox pod (the repository's template, the real exec server) from create to
 * Ready through devcluster — API server, scheduler bind, kubelet, runc, port forwarder, readiness
 * probe — one at a time (the cost replace mode pays per command). Floor: one `runc run` of
 * `/bin/true` with the same kind of OCI spec (namespaces, id mapping, seccomp, cgroups), started
 * and exited.
 */
export const suite: BenchSuite = {
  name: "pod-start",
  async run(): Promise<BenchRow[]> {
    const floor = await runcFloor();
    const starts = await measurePodStarts("bench-pod-start", PODS);
    const s = summarize(starts.samples);
    const f = summarize(floor);
    return [
      {
        name: "pod_start",
        n: starts.samples.length,
        p50Ms: s.p50 ?? 0,
        p99Ms: s.p99 ?? 0,
        floorName: "runc run of /bin/true (same OCI spec)",
        floorP50Ms: f.p50,
        floorP99Ms: f.p99,
        // CPU, not wall time, is what bounds replace mode under a burst: pods start in parallel,
        // so the node's start-up rate is its cores divided by the CPU one start-up takes.
        extra: {
          cpuMsPerPod: Math.round(starts.machineMsPerPod),
          devclusterCpuMsPerPod: Math.round(starts.devclusterMsPerPod),
          podTreeCpuMsPerPod: Math.round(starts.treeMsPerPod),
          startCeilingPerSec: Number(((cpus().length * 1000) / starts.machineMsPerPod).toFixed(1)),
        },
      },
    ];
  },
};

async function runcFloor(): Promise<number[]> {
  const runtime = await makeRuntimeDirs();
  const ids = new IdRangeAllocator();
  const logDir = await mkdtemp(join(tmpdir(), "bench-runc-"));
  const out: number[] = [];
  try {
    for (let i = 0; i < FLOOR_RUNS; i++) {
      const range = ids.allocate();
      if (!range) throw new Error("no id range");
      const t0 = performance.now();
      const c = new Container(
        `bench-floor-${process.pid}-${i}`,
        {
          hostname: "floor",
          uid: 1000,
          gid: 1000,
          supplementalGids: [],
          readOnlyRoot: true,
          workingDir: "/",
          binds: [],
          tmpfs: [],
          argv: ["/bin/true"],
          env: { PATH: "/usr/bin:/bin" },
          capabilities: [],
          limits: { memoryBytes: 512 * 1024 * 1024, cpuMillis: 1000, pids: 1024 },
        },
        range,
        runtime,
        join(logDir, `${i}.log`),
      );
      const exit = await c.exited;
      out.push(performance.now() - t0);
      ids.release(range);
      if (exit.exitCode !== 0) throw new Error(`runc floor run exited ${exit.exitCode}: ${c.outputTail}`);
    }
  } finally {
    ids.releaseAll();
    await rm(logDir, { recursive: true, force: true });
    await rm(runtime.root, { recursive: true, force: true });
  }
  return out;
}
