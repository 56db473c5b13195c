// The tenants' secret store (cluster-agent/secrets/) against devcluster's API server through the real
// @kubernetes/client-node: one Secret per tenant, writes by compare-and-swap, values never in what
// is listed, another tenant's names absent, and the egress CA made once for every replica.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";
import { loadOrCreateEgressCa } from "../../cluster-agent/secrets/egress-ca.ts";
import { TenantSecrets, tenantSecretName } from "../../cluster-agent/secrets/tenant-secrets.ts";
import { startTestCluster, type TestCluster } from "../support/devcluster.ts";

const NS = "secrets-test-system";
let cluster: TestCluster;
let clients: ReturnType<typeof makeClients>;

beforeAll(async () => {
  cluster = await startTestCluster({ namespaces: [NS] });
  clients = makeClients(cluster.kubeConfig());
}, 60_000);

afterAll(async () => {
  await cluster?.close();
}, 30_000);

const store = (o: Partial<ConstructorParameters<typeof TenantSecrets>[0]> = {}) =>
  new TenantSecrets({ clients, namespace: NS, maxPerTenant: 4, ...o });

describe("TenantSecrets against the API server", () => {
  it("concurrent puts through two replicas all land (CAS on the tenant's one Secret); list shows no value", async () => {
    const a = store();
    const b = store();
    const names = ["K0", "K1", "K2", "K3"];
    const results = await Promise.all(
      names.map((n, i) => (i % 2 ? a : b).put("t-cas", n, { value: `value-${n}`, hosts: ["api.test"] })),
    );
    expect(results.map((r) => r.ok)).toEqual([true, true, true, true]);
    const listed = await a.list("t-cas");
    if (!listed.ok) throw listed.error;
    expect(listed.value.map((x) => x.name)).toEqual(names);
    expect(JSON.stringify(listed.value)).not.toContain("value-");
    const values = await b.values("t-cas");
    expect([...values.values()].map((v) => v.value.reveal()).sort()).toEqual(names.map((n) => `value-${n}`));
    expect(JSON.stringify([...values.values()])).not.toContain("value-");
    // The limit counts the stored names; a replace of one is not a new one.
    const fifth = await a.put("t-cas", "K4", { value: "v", hosts: ["api.test"] });
    expect(fifth.ok || fifth.error.code).toBe("secret_limit");
    expect((await a.put("t-cas", "K0", { value: "again", hosts: ["other.test"] })).ok).toBe(true);
  });

  it("another tenant sees none and deletes none; a hand-made object under the hash is nobody's", async () => {
    const s = store();
    expect((await s.put("t-a", "API_KEY", { value: "v-a", hosts: ["api.test"] })).ok).toBe(true);
    expect(await s.list("t-b")).toEqual({ ok: true, value: [] });
    const del = await s.delete("t-b", "API_KEY");
    expect(del.ok || del.error.code).toBe("secret_not_found");
    expect(await s.missing("t-b", ["API_KEY"])).toEqual({ ok: true, value: ["API_KEY"] });
    expect(await s.missing("t-a", ["API_KEY", "NOPE"])).toEqual({ ok: true, value: ["NOPE"] });
    // A Secret under t-c's name that does not say it is t-c's (a collision, a hand edit).
    await clients.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: tenantSecretName("t-c") }, stringData: { API_KEY: "planted" } },
    });
    expect((await s.values("t-c")).size).toBe(0);
    expect(await s.list("t-c")).toEqual({ ok: true, value: [] });
  });

  it("a delete is seen at once by the replica that made it, by another within its cache time", async () => {
    let now = 0;
    const writer = store();
    const reader = store({ now: () => now, cacheMs: 2_000 });
    expect((await writer.put("t-d", "K", { value: "v", hosts: ["api.test"] })).ok).toBe(true);
    expect((await reader.values("t-d")).has("K")).toBe(true);
    expect((await writer.delete("t-d", "K")).ok).toBe(true);
    expect((await writer.values("t-d")).has("K")).toBe(false);
    expect((await reader.values("t-d")).has("K")).toBe(true);
    now = 2_000;
    expect((await reader.values("t-d")).has("K")).toBe(false);
  });

  it("the egress CA is made once: replicas racing at start get the same one", async () => {
    const cas = await Promise.all([0, 1, 2].map(() => loadOrCreateEgressCa(clients, NS)));
    expect(new Set(cas.map((c) => c.certPem)).size).toBe(1);
    expect((await loadOrCreateEgressCa(clients, NS)).keyPem).toBe(cas[0]?.keyPem);
  });
});
