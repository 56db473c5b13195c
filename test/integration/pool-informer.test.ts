import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoordinationV1Api, type V1Lease } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchedCache } from "../../cluster-agent/k8s/watched-cache.ts";
import { type ApiServer, startApiServer } from "../../devcluster/apiserver/index.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { testKubeletClient } from "../support/devcluster.ts";
import { waitFor } from "../support/lease-cluster.ts";

// The informer wrapper against a real (devcluster) API server that goes away and comes back on the
// same port with the same state: client-node's informer fires `error` and stops; ours restarts it
// with jittered backoff and the cache catches up with what happened meanwhile.
let dir: string;
let api: ApiServer | undefined;
const token = "informer-test-token";

async function startApi(port = 0): Promise<ApiServer> {
  return await startApiServer({
    tokens: { [token]: "admin" },
    kubeletClient: await testKubeletClient(),
    port,
    stateFile: join(dir, "state.json"),
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pool-informer-"));
  api = await startApi();
});

afterAll(async () => {
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("WatchedCache", () => {
  it("restarts the informer with backoff after the API server drops, and catches up", async () => {
    if (!api) throw new Error("no api");
    const port = Number(new URL(api.url).port);
    const kc = makeKubeConfig({ server: api.url, token, user: "admin" });
    const coord = kc.makeApiClient(CoordinationV1Api);
    const ns = "default";
    await fetch(`${api.url}/api/v1/namespaces`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ metadata: { name: ns } }),
    });
    await coord.createNamespacedLease({
      namespace: ns,
      body: { metadata: { name: "before" }, spec: { leaseDurationSeconds: 5 } },
    });

    const errors: number[] = [];
    const cache = new WatchedCache<V1Lease>({
      kubeConfig: kc,
      path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
      list: () => coord.listNamespacedLease({ namespace: ns }),
      minBackoffMs: 100,
      maxBackoffMs: 800,
      onError: (_e, ms) => errors.push(ms),
    });
    const changes: string[] = [];
    cache.onChange((c) => changes.push(`${c.type}:${c.obj.metadata?.name}`));
    try {
      expect(await cache.start(5_000)).toBe(true);
      expect(cache.get("before")).toBeDefined();

      await api.close();
      api = undefined;
      // Down for a while: several failed restarts, each waiting longer (capped, jittered).
      await waitFor("a few failed restarts", () => errors.length >= 4, 10_000, 20);
      api = await startApi(port);
      await coord.createNamespacedLease({
        namespace: ns,
        body: { metadata: { name: "after" }, spec: { leaseDurationSeconds: 5 } },
      });
      await waitFor(
        "the cache to see the lease created after the outage",
        () => cache.get("after"),
        10_000,
        20,
      );
      expect(changes).toContain("add:after");
      // Backoff grew from the minimum and stayed within the cap.
      expect(Math.max(...errors)).toBeLessThanOrEqual(800);
      expect(errors.slice(0, 4).some((ms, i) => i > 0 && ms > (errors[0] ?? 0))).toBe(true);

      // Our own write is visible at once (observe), before its watch event arrives.
      const mine = await coord.createNamespacedLease({
        namespace: ns,
        body: { metadata: { name: "mine" }, spec: { leaseDurationSeconds: 5 } },
      });
      cache.observe(mine);
      expect(cache.get("mine")?.metadata?.resourceVersion).toBe(mine.metadata?.resourceVersion);
      // An older version never replaces a newer one.
      const updated = await coord.replaceNamespacedLease({
        name: "mine",
        namespace: ns,
        body: { ...mine, spec: { ...mine.spec, leaseDurationSeconds: 6 } },
      });
      cache.observe(updated);
      cache.observe(mine);
      expect(cache.get("mine")?.spec?.leaseDurationSeconds).toBe(6);
    } finally {
      await cache.stop();
    }
  }, 30_000);
});
