/**
 * The per-tenant sandbox count (cluster-agent/sandboxes/tenant-reservations.ts) against devcluster:
 * concurrent reservations from two "replicas" (two clients, two instances) never exceed the limit,
 * a release frees a place, and entries of sandboxes that do not exist heal after the grace.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";
import {
  reservationLeaseName,
  TenantReservations,
  type TenantReservationsOptions,
} from "../../cluster-agent/sandboxes/tenant-reservations.ts";
import { type LeaseCluster, startLeaseCluster } from "../support/lease-cluster.ts";

let cluster: LeaseCluster;

beforeAll(async () => {
  cluster = await startLeaseCluster("reservations");
}, 60_000);

afterAll(async () => {
  await cluster?.close();
});

function replica(extra: Partial<TenantReservationsOptions> = {}): TenantReservations {
  return new TenantReservations({
    clients: makeClients(cluster.dc.kubeConfig()),
    namespace: cluster.namespace,
    limit: 8,
    isLive: () => true,
    ...extra,
  });
}

describe("tenant sandbox reservations", () => {
  it("30 concurrent reservations over two replicas: exactly the limit succeed, the rest get sandbox_limit", async () => {
    const [a, b] = [replica(), replica()];
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).reserve("burst", `sbx-${i}`)),
    );
    const granted = results.filter((r) => r.ok).length;
    expect(granted).toBe(8);
    for (const r of results) if (!r.ok) expect(r.error.code).toBe("sandbox_limit");
    // A reserved id asking again is not a second place.
    const again = results.findIndex((r) => r.ok);
    expect((await a.reserve("burst", `sbx-${again}`)).ok).toBe(true);
    // Another tenant has its own count.
    expect((await a.reserve("other", "sbx-x")).ok).toBe(true);
    // A release frees exactly one place.
    expect((await b.release("burst", `sbx-${again}`)).ok).toBe(true);
    expect((await a.reserve("burst", "late-1")).ok).toBe(true);
    const full = await b.reserve("burst", "late-2");
    expect(full.ok ? "granted" : full.error.code).toBe("sandbox_limit");
  }, 60_000);

  it("an API server failure answers in our words; the server's own text is only the cause (for the log)", async () => {
    // A real refusal with the API server's own text: the namespace does not exist.
    const r = await replica({ namespace: "no-such-ns-q7x" }).reserve("t1", "sbx-1");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("sandbox_failed");
    expect(JSON.stringify(r.error.toBody("req-1"))).not.toContain("no-such-ns-q7x");
    expect(String((r.error.cause as Error | undefined)?.message)).toContain("no-such-ns-q7x");
  }, 30_000);

  it("an entry whose sandbox does not exist is dropped after the grace; a live one never is", async () => {
    let now = 1_000_000;
    const live = new Set(["kept"]);
    const r = replica({ limit: 2, graceMs: 60_000, now: () => now, isLive: (_t, id) => live.has(id) });
    expect((await r.reserve("heal", "kept")).ok).toBe(true);
    expect((await r.reserve("heal", "never-made")).ok).toBe(true);
    // Within the grace a create may still be in flight: its place is held.
    now += 59_000;
    const held = await r.reserve("heal", "third");
    expect(held.ok ? "granted" : held.error.code).toBe("sandbox_limit");
    // After it, the entry without a sandbox goes; the live one stays however old.
    now += 2_000;
    expect((await r.reserve("heal", "third")).ok).toBe(true);
    const lease = await cluster.clients.coordination.readNamespacedLease({
      name: reservationLeaseName("heal"),
      namespace: cluster.namespace,
    });
    expect(
      Object.keys(JSON.parse(lease.metadata?.annotations?.["pi-sandbox-runtime/sandboxes"] ?? "{}")).sort(),
    ).toEqual(["kept", "third"]);
    // The counter is a Lease nobody holds: the pool never takes it for a pod.
    expect(lease.spec?.holderIdentity ?? "").toBe("");
    expect(lease.metadata?.labels).toEqual({ "pi-sandbox-runtime/role": "tenant-sandboxes" });
  }, 30_000);
});
