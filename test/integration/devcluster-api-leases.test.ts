import {
  ApiException,
  CoordinationV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Lease,
  V1MicroTime,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../support/devcluster.ts";

const NS = "leases-test";
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

let s: TestApiServer;
let coord: CoordinationV1Api;

beforeAll(async () => {
  s = await startTestApiServer({ namespaces: [NS] });
  coord = s.kubeConfig().makeApiClient(CoordinationV1Api);
});
afterAll(async () => {
  await s?.close();
});

function lease(name: string, spec: V1Lease["spec"] = {}): V1Lease {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, labels: { app: "t" } },
    spec,
  };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    const body =
      typeof e.body === "string"
        ? (JSON.parse(e.body) as Record<string, unknown>)
        : (e.body as Record<string, unknown>);
    return { code: e.code, body };
  }
  throw new Error("expected the call to fail");
}

function expectStatus(body: Record<string, unknown>, code: number, reason: string): void {
  expect(body).toMatchObject({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    reason,
    code,
  });
  expect(typeof body.message).toBe("string");
}

describe("leases (coordination.k8s.io/v1) through client-node", () => {
  it("creates with MicroTime and hands the times back as six-digit strings", async () => {
    const now = new Date("2026-01-02T03:04:05.123Z");
    const created = await coord.createNamespacedLease({
      namespace: NS,
      body: lease("mt", {
        holderIdentity: "a",
        leaseDurationSeconds: 45,
        acquireTime: new V1MicroTime(now),
        renewTime: new V1MicroTime(now),
        leaseTransitions: 0,
      }),
    });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata?.creationTimestamp).toBeDefined();
    const read = await coord.readNamespacedLease({ name: "mt", namespace: NS });
    expect(typeof read.spec?.renewTime).toBe("string");
    expect(read.spec?.renewTime as unknown as string).toBe("2026-01-02T03:04:05.123000Z");
  });

  it("rejects a plain Date (.123Z) with 400 and Go's parse message", async () => {
    const err = await apiError(
      coord.createNamespacedLease({
        namespace: NS,
        body: lease("plain-date", { renewTime: new Date("2026-01-02T03:04:05.123Z") as V1MicroTime }),
      }),
    );
    expect(err.code).toBe(400);
    expectStatus(err.body, 400, "BadRequest");
    expect(err.body.message).toContain('cannot parse ".123Z" as ".000000"');
  });

  it("PUT with the current resourceVersion → 200 and a higher resourceVersion", async () => {
    const c = await coord.createNamespacedLease({
      namespace: NS,
      body: lease("cas", { leaseDurationSeconds: 10 }),
    });
    c.spec = { ...c.spec, holderIdentity: "me", leaseTransitions: 1, renewTime: new V1MicroTime(new Date()) };
    const u = await coord.replaceNamespacedLease({ name: "cas", namespace: NS, body: c });
    expect(u.spec?.holderIdentity).toBe("me");
    expect(Number(u.metadata?.resourceVersion)).toBeGreaterThan(Number(c.metadata?.resourceVersion));
  });

  it("PUT with a stale resourceVersion → 409 Conflict with the real message", async () => {
    const c = await coord.createNamespacedLease({
      namespace: NS,
      body: lease("stale", { leaseDurationSeconds: 10 }),
    });
    await coord.replaceNamespacedLease({
      name: "stale",
      namespace: NS,
      body: { ...c, spec: { holderIdentity: "first" } },
    });
    const err = await apiError(
      coord.replaceNamespacedLease({
        name: "stale",
        namespace: NS,
        body: { ...c, spec: { holderIdentity: "second" } },
      }),
    );
    expect(err.code).toBe(409);
    expectStatus(err.body, 409, "Conflict");
    expect(err.body.message).toBe(
      'Operation cannot be fulfilled on leases.coordination.k8s.io "stale": the object has been modified; please apply your changes to the latest version and try again',
    );
    expect(err.body.details).toEqual({ name: "stale", group: "coordination.k8s.io", kind: "leases" });
    const now = await coord.readNamespacedLease({ name: "stale", namespace: NS });
    expect(now.spec?.holderIdentity).toBe("first");
  });

  it("PUT without resourceVersion → 422 Invalid (no unconditional update for Leases)", async () => {
    await coord.createNamespacedLease({ namespace: NS, body: lease("uncond") });
    const err = await apiError(
      coord.replaceNamespacedLease({ name: "uncond", namespace: NS, body: lease("uncond") }),
    );
    expect(err.code).toBe(422);
    expectStatus(err.body, 422, "Invalid");
    expect(err.body.message).toBe(
      'leases.coordination.k8s.io "uncond" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update',
    );
  });

  it("merge-PATCH with a stale resourceVersion → 409; without one → applied", async () => {
    const c = await coord.createNamespacedLease({
      namespace: NS,
      body: lease("mp", { leaseDurationSeconds: 10 }),
    });
    const p1 = await coord.patchNamespacedLease(
      { name: "mp", namespace: NS, body: { spec: { holderIdentity: "x" } } },
      mergePatch,
    );
    expect(p1.spec?.holderIdentity).toBe("x");
    expect(p1.spec?.leaseDurationSeconds).toBe(10);
    const err = await apiError(
      coord.patchNamespacedLease(
        {
          name: "mp",
          namespace: NS,
          body: { metadata: { resourceVersion: c.metadata?.resourceVersion }, spec: { holderIdentity: "y" } },
        },
        mergePatch,
      ),
    );
    expect(err.code).toBe(409);
    expect(err.body.reason).toBe("Conflict");
    const p2 = await coord.patchNamespacedLease(
      {
        name: "mp",
        namespace: NS,
        body: { metadata: { resourceVersion: p1.metadata?.resourceVersion }, spec: { holderIdentity: null } },
      },
      mergePatch,
    );
    expect(p2.spec?.holderIdentity).toBeUndefined();
  });

  it("JSON patch (client-node's default) applies; a failed test op → 422", async () => {
    await coord.createNamespacedLease({ namespace: NS, body: lease("jp", { leaseTransitions: 3 }) });
    const p = await coord.patchNamespacedLease({
      name: "jp",
      namespace: NS,
      body: [
        { op: "test", path: "/spec/leaseTransitions", value: 3 },
        { op: "replace", path: "/spec/leaseTransitions", value: 4 },
      ],
    });
    expect(p.spec?.leaseTransitions).toBe(4);
    const err = await apiError(
      coord.patchNamespacedLease({
        name: "jp",
        namespace: NS,
        body: [
          { op: "test", path: "/spec/leaseTransitions", value: 3 },
          { op: "replace", path: "/spec/leaseTransitions", value: 9 },
        ],
      }),
    );
    expect(err.code).toBe(422);
    expect((await coord.readNamespacedLease({ name: "jp", namespace: NS })).spec?.leaseTransitions).toBe(4);
  });

  it("create of an existing name → 409 AlreadyExists", async () => {
    await coord.createNamespacedLease({ namespace: NS, body: lease("dup") });
    const err = await apiError(coord.createNamespacedLease({ namespace: NS, body: lease("dup") }));
    expect(err.code).toBe(409);
    expectStatus(err.body, 409, "AlreadyExists");
    expect(err.body.message).toBe('leases.coordination.k8s.io "dup" already exists');
  });

  it("read of a missing one → 404 NotFound", async () => {
    const err = await apiError(coord.readNamespacedLease({ name: "nope", namespace: NS }));
    expect(err.code).toBe(404);
    expectStatus(err.body, 404, "NotFound");
    expect(err.body.message).toBe('leases.coordination.k8s.io "nope" not found');
    expect(err.body.details).toEqual({ name: "nope", group: "coordination.k8s.io", kind: "leases" });
  });

  it("leaseDurationSeconds 0 → 422 on create and on update", async () => {
    const err = await apiError(
      coord.createNamespacedLease({ namespace: NS, body: lease("zero", { leaseDurationSeconds: 0 }) }),
    );
    expect(err.code).toBe(422);
    expectStatus(err.body, 422, "Invalid");
    expect(err.body.message).toBe(
      'Lease.coordination.k8s.io "zero" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0',
    );
    const c = await coord.createNamespacedLease({
      namespace: NS,
      body: lease("zero2", { leaseDurationSeconds: 5 }),
    });
    const err2 = await apiError(
      coord.replaceNamespacedLease({
        name: "zero2",
        namespace: NS,
        body: { ...c, spec: { leaseDurationSeconds: 0 } },
      }),
    );
    expect(err2.code).toBe(422);
  });

  it("negative leaseTransitions → 422", async () => {
    const err = await apiError(
      coord.createNamespacedLease({ namespace: NS, body: lease("neg", { leaseTransitions: -1 }) }),
    );
    expect(err.code).toBe(422);
    expect(err.body.message).toContain(
      "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
    );
  });

  it("delete → Success Status; then 404", async () => {
    const c = await coord.createNamespacedLease({ namespace: NS, body: lease("del") });
    const st = await s.raw("DELETE", `${LEASES}/del`);
    expect(st.status).toBe(200);
    expect(st.json).toMatchObject({
      kind: "Status",
      status: "Success",
      details: { name: "del", group: "coordination.k8s.io", kind: "leases", uid: c.metadata?.uid },
    });
    const err = await apiError(coord.deleteNamespacedLease({ name: "del", namespace: NS }));
    expect(err.code).toBe(404);
  });

  it("list carries a resourceVersion and filters by label selector", async () => {
    await coord.createNamespacedLease({
      namespace: NS,
      body: { ...lease("sel-a"), metadata: { name: "sel-a", labels: { pool: "p1" } } },
    });
    await coord.createNamespacedLease({
      namespace: NS,
      body: { ...lease("sel-b"), metadata: { name: "sel-b", labels: { pool: "p2" } } },
    });
    const l = await coord.listNamespacedLease({ namespace: NS, labelSelector: "pool=p1" });
    expect(l.items.map((i) => i.metadata?.name)).toEqual(["sel-a"]);
    expect(l.metadata?.resourceVersion).toMatch(/^\d+$/);
    const all = await coord.listLeaseForAllNamespaces({ labelSelector: "pool in (p1,p2)" });
    expect(all.items.map((i) => i.metadata?.name).sort()).toEqual(["sel-a", "sel-b"]);
  });
});

describe("leases through raw HTTP", () => {
  it("a MicroTime without fraction → 400", async () => {
    const r = await s.raw(
      "POST",
      LEASES,
      lease("nofrac", { renewTime: "2026-01-02T03:04:05Z" as unknown as V1MicroTime }),
    );
    expect(r.status).toBe(400);
    expect(r.json.reason).toBe("BadRequest");
    expect(r.json.message).toContain('cannot parse "Z" as ".000000"');
  });

  it("MicroTime with an offset is normalised to UTC, six digits", async () => {
    const r = await s.raw(
      "POST",
      LEASES,
      lease("offset", { renewTime: "2026-01-02T05:04:05.000001+02:00" as unknown as V1MicroTime }),
    );
    expect(r.status).toBe(201);
    expect(r.json.spec.renewTime).toBe("2026-01-02T03:04:05.000001Z");
  });

  it("merge-PATCH that yields a 3-digit MicroTime → 422 on field 'patch' (the real patch handler)", async () => {
    await s.raw("POST", LEASES, lease("patch-mt"));
    const r = await s.raw(
      "PATCH",
      `${LEASES}/patch-mt`,
      { spec: { renewTime: "2026-01-02T03:04:05.123Z" } },
      "application/merge-patch+json",
    );
    expect(r.status).toBe(422);
    expect(r.json.reason).toBe("Invalid");
    expect(r.json.details.causes[0].field).toBe("patch");
    expect(r.json.message).toContain('cannot parse ".123Z" as ".000000"');
  });

  it("a wrongly typed field → 400 with Go's unmarshal message", async () => {
    const r = await s.raw("POST", LEASES, {
      metadata: { name: "typed" },
      spec: { leaseDurationSeconds: "45" },
    });
    expect(r.status).toBe(400);
    expect(r.json.message).toContain(
      "json: cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
    );
  });

  it("unknown fields: dropped with a Warning by default, 400 under fieldValidation=Strict", async () => {
    const body = { metadata: { name: "unk" }, spec: { holderIdentity: "h", bogus: 1 } };
    const strict = await s.raw("POST", `${LEASES}?fieldValidation=Strict`, body);
    expect(strict.status).toBe(400);
    expect(strict.json.message).toContain('unknown field "spec.bogus"');
    const warn = await s.raw("POST", LEASES, body);
    expect(warn.status).toBe(201);
    expect(warn.json.spec).toEqual({ holderIdentity: "h" });
    expect(warn.headers.get("warning")).toContain("unknown field");
  });

  it("strategic-merge-patch and apply-patch (with a fieldManager) are accepted; unknown types → 415", async () => {
    await s.raw("POST", LEASES, lease("smp", { holderIdentity: "a", leaseDurationSeconds: 3 }));
    const ok = await s.raw(
      "PATCH",
      `${LEASES}/smp`,
      { spec: { holderIdentity: "b" } },
      "application/strategic-merge-patch+json",
    );
    expect(ok.status).toBe(200);
    expect(ok.json.spec).toEqual({ holderIdentity: "b", leaseDurationSeconds: 3 });
    const applyBody = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "smp" },
      spec: { holderIdentity: "c" },
    };
    const anonymous = await s.raw("PATCH", `${LEASES}/smp`, applyBody, "application/apply-patch+yaml");
    expect(anonymous.status).toBe(422);
    expect(anonymous.json.message).toContain("fieldManager: Required value: is required for apply patch");
    const apply = await s.raw(
      "PATCH",
      `${LEASES}/smp?fieldManager=test`,
      applyBody,
      "application/apply-patch+yaml",
    );
    expect(apply.status).toBe(200);
    expect(apply.json.spec).toEqual({ holderIdentity: "c", leaseDurationSeconds: 3 });
    const bad = await s.raw("PATCH", `${LEASES}/smp`, { spec: {} }, "application/json");
    expect(bad.status).toBe(415);
  });

  it("an update that changes nothing keeps the resourceVersion", async () => {
    const c = await s.raw("POST", LEASES, lease("noop", { holderIdentity: "a" }));
    const u = await s.raw("PUT", `${LEASES}/noop`, c.json);
    expect(u.status).toBe(200);
    expect(u.json.metadata.resourceVersion).toBe(c.json.metadata.resourceVersion);
  });

  it("resourceVersion is one global, increasing counter across kinds", async () => {
    const a = await s.raw("POST", LEASES, lease("rv-a"));
    const sec = await s.raw("POST", `/api/v1/namespaces/${NS}/secrets`, {
      metadata: { name: "rv-s" },
      stringData: { k: "v" },
    });
    const b = await s.raw("POST", LEASES, lease("rv-b"));
    const rvs = [a, sec, b].map((r) => Number(r.json.metadata.resourceVersion));
    expect(rvs[1]).toBe((rvs[0] ?? 0) + 1);
    expect(rvs[2]).toBe((rvs[1] ?? 0) + 1);
  });

  it("create with a resourceVersion set → 500 as the real storage layer answers", async () => {
    const r = await s.raw("POST", LEASES, { metadata: { name: "preset", resourceVersion: "5" } });
    expect(r.status).toBe(500);
    expect(r.json.message).toContain("resourceVersion should not be set on objects to be created");
  });

  it("delete preconditions: a wrong uid → 409", async () => {
    await s.raw("POST", LEASES, lease("pre"));
    const r = await s.raw("DELETE", `${LEASES}/pre`, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      preconditions: { uid: "x" },
    });
    expect(r.status).toBe(409);
    expect(r.json.message).toContain("Precondition failed: UID in precondition: x");
    expect((await s.raw("GET", `${LEASES}/pre`)).status).toBe(200);
  });
});
