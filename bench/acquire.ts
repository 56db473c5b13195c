/**
 * Acquire + release latency on a free pool (pool sizes 8, 64, 512) next to one raw Lease PUT on
 * the same API server, and 409 conflicts per acquisition with three replicas under contention.
 *
 * The lease path is the real one (LeaseManager, watch-fed caches, CAS PUTs through client-node
 * against devcluster). The pods are "Lease-only fakes": Pod objects bound to a node no kubelet
 * serves, marked Running/Ready through the status subresource, so 512 of them cost no sandbox.
 * Release frees the Lease (the `scrub` path with a no-op scrubber), so a row measures two CAS
 * PUTs plus the manager's own work; the floor is one PUT.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PatchStrategy, setHeaderOptions, type V1Lease } from "@kubernetes/client-node";
import { AgentPool, type PoolConfig } from "../cluster-agent/agent-pool.ts";
import type { Scrubber } from "../cluster-agent/exec/executor.ts";
import { type KubeClients, makeClients } from "../cluster-agent/k8s/client.ts";
import { microNow } from "../cluster-agent/k8s/microtime.ts";
import { percentile } from "../cluster-agent/leases/stats.ts";
import { POOL_LABELS } from "../cluster-agent/pool-state/labels.ts";
import { startDevCluster } from "../devcluster/devcluster.ts";
import { ok } from "../shared/errors.ts";
import type { BenchRow, BenchSuite } from "./types.ts";

const noopScrubber: Scrubber = { scrub: async () => ok({ killed: 0, removed: 0 }) };

function poolConfig(namespace: string, agentId: string): PoolConfig {
  return {
    namespace,
    poolSize: 0,
    poolMaxPods: 10_000,
    poolMaxCreatePerSecond: 32,
    poolScaleDownAfterSeconds: 60,
    leaseTtlSeconds: 30,
    leaderLeaseSeconds: 15,
    queueTimeoutSeconds: 30,
    recycle: "scrub",
    tenantMaxLeases: 100_000,
    tenantShareLeases: 0,
    sandboxImage: "pi-sandbox-runtime/sandbox:dev",
    podTemplatePath: undefined,
    runtimeClassName: undefined,
    agentId,
    region: "bench",
    podReadyTimeoutSeconds: 60,
    poolToken: undefined,
  };
}

/** n Ready pods with free Leases, bound to a node nobody runs (no sandbox behind them). */
async function createFakePool(c: KubeClients, namespace: string, n: number): Promise<void> {
  const batch = 32;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, async (_, j) => {
        const name = `fake-${String(i + j).padStart(4, "0")}`;
        await c.core.createNamespacedPod({
          namespace,
          body: {
            metadata: { name, labels: { ...POOL_LABELS } },
            spec: {
              nodeName: "bench-no-such-node",
              containers: [{ name: "sandbox", image: "pi-sandbox-runtime/sandbox:dev" }],
            },
          },
        });
        await c.core.patchNamespacedPodStatus(
          {
            name,
            namespace,
            body: {
              status: {
                phase: "Running",
                podIP: `127.0.2.${((i + j) % 250) + 2}`,
                conditions: [{ type: "Ready", status: "True" }],
              },
            },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        await c.coordination.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, labels: { ...POOL_LABELS } },
            spec: { leaseDurationSeconds: 30, leaseTransitions: 0 },
          },
        });
      }),
    );
  }
}

async function startManagerPool(c: KubeClients, namespace: string, agentId: string): Promise<AgentPool> {
  const r = await AgentPool.start({
    config: poolConfig(namespace, agentId),
    clients: c,
    scrubber: noopScrubber,
    runController: false,
  });
  if (!r.ok) throw r.error;
  return r.value;
}

/** One raw CAS PUT on a Lease, repeated: the floor. */
async function leasePutFloor(c: KubeClients, namespace: string, iterations: number): Promise<number[]> {
  let lease: V1Lease = await c.coordination.createNamespacedLease({
    namespace,
    body: { metadata: { name: "bench-floor" }, spec: { leaseDurationSeconds: 30, leaseTransitions: 0 } },
  });
  const out: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    lease = await c.coordination.replaceNamespacedLease({
      name: "bench-floor",
      namespace,
      body: {
        ...lease,
        spec: { ...lease.spec, holderIdentity: `floor/${i}`, renewTime: microNow(), acquireTime: microNow() },
      },
    });
    out.push(performance.now() - t0);
  }
  return out;
}

async function acquireReleaseLatency(pool: AgentPool, iterations: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    const r = await pool.manager.acquire({ tenant: "bench", requestId: `b${i}` });
    if (!r.ok) throw r.error;
    await r.value.release();
    out.push(performance.now() - t0);
  }
  return out;
}

const p = (xs: number[], q: number) => percentile(xs, q) ?? 0;

export async function runAcquireBench(
  opts: { sizes?: number[]; iterations?: number; contention?: number } = {},
): Promise<BenchRow[]> {
  const sizes = opts.sizes ?? [8, 64, 512];
  const iterations = opts.iterations ?? 300;
  const contention = opts.contention ?? 300;
  const dir = await mkdtemp(join(tmpdir(), "bench-acquire-"));
  const namespaces = sizes.map((n) => `bench-${n}`);
  const dc = await startDevCluster({ dir, images: {}, namespaces: [...namespaces, "bench-floor"] });
  const rows: BenchRow[] = [];
  try {
    const c = makeClients(dc.kubeConfig());
    // Warm the connection, then the floor.
    await leasePutFloor(c, "bench-floor", 20).catch(() => undefined);
    await c.coordination
      .deleteNamespacedLease({ name: "bench-floor", namespace: "bench-floor" })
      .catch(() => undefined);
    const floor = await leasePutFloor(c, "bench-floor", iterations);
    const floorP50 = p(floor, 50);
    const floorP99 = p(floor, 99);
    rows.push({ name: "lease PUT (floor)", n: floor.length, p50Ms: floorP50, p99Ms: floorP99 });

    for (const [i, size] of sizes.entries()) {
      const ns = namespaces[i] as string;
      await createFakePool(c, ns, size);
      const pool = await startManagerPool(makeClients(dc.kubeConfig()), ns, `bench-a-${size}`);
      try {
        await acquireReleaseLatency(pool, 20); // warm-up
        const lat = await acquireReleaseLatency(pool, iterations);
        rows.push({
          name: `acquire+release, free pool of ${size}`,
          n: lat.length,
          p50Ms: p(lat, 50),
          p99Ms: p(lat, 99),
          floorName: "one Lease PUT",
          floorP50Ms: floorP50,
          floorP99Ms: floorP99,
          extra: { poolSize: size, pods: "lease-only fakes", putsPerOp: 2 },
        });
        if (size === sizes[sizes.length - 1]) {
          // A burst on one replica: up to 16 CAS in flight; the single-threaded API server sets the pace.
          const burst = 64;
          const lat: number[] = [];
          const handles = await Promise.all(
            Array.from({ length: burst }, async (_, k) => {
              const t0 = performance.now();
              const r = await pool.manager.acquire({ tenant: "bench", requestId: `burst${k}` });
              lat.push(performance.now() - t0);
              return r;
            }),
          );
          await Promise.all(handles.map((h) => (h.ok ? h.value.release() : undefined)));
          rows.push({
            name: `burst of ${burst} acquisitions on one replica, free pool of ${size}`,
            n: lat.length,
            p50Ms: p(lat, 50),
            p99Ms: p(lat, 99),
            floorName: "one Lease PUT",
            floorP50Ms: floorP50,
            floorP99Ms: floorP99,
            extra: { poolSize: size, parallelCas: 16, note: "bound by the API server write rate" },
          });
        }
      } finally {
        await pool.close();
      }
    }

    // Contention: three replicas (separate caches, clients and managers; one process) racing for 8 pods.
    const ns = namespaces[0] as string;
    const replicas = await Promise.all(
      [1, 2, 3].map((k) => startManagerPool(makeClients(dc.kubeConfig()), ns, `bench-r${k}`)),
    );
    try {
      const lat: number[] = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: contention }, async (_, i) => {
          const pool = replicas[i % 3] as AgentPool;
          const s = performance.now();
          const r = await pool.manager.acquire({ tenant: "bench", requestId: `c${i}` });
          if (!r.ok) return;
          lat.push(performance.now() - s);
          await new Promise((res) => setTimeout(res, 2));
          await r.value.release();
        }),
      );
      const wall = performance.now() - t0;
      const acquisitions = replicas.reduce((a, r) => a + r.manager.stats.acquisitions, 0);
      const conflicts = replicas.reduce((a, r) => a + r.manager.stats.conflicts, 0);
      rows.push({
        name: "acquire under contention (3 replicas, 8 pods)",
        n: lat.length,
        p50Ms: p(lat, 50),
        p99Ms: p(lat, 99),
        floorName: "one Lease PUT",
        floorP50Ms: floorP50,
        floorP99Ms: floorP99,
        extra: {
          concurrent: contention,
          conflictsPer: Number((conflicts / Math.max(1, acquisitions)).toFixed(3)),
          conflicts,
          acquisitions,
          perSecond: Math.round((acquisitions / wall) * 1000),
          note: "latency includes queue wait",
        },
      });
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  } finally {
    await dc.close();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return rows;
}

export const suite: BenchSuite = { name: "acquire", run: () => runAcquireBench() };

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await runAcquireBench();
  console.table(rows.map((r) => ({ ...r, extra: JSON.stringify(r.extra ?? {}) })));
}
