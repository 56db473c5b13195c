import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../support/devcluster.ts";

const NS = "errors-test";
const PODS = `/api/v1/namespaces/${NS}/pods`;
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;

let s: TestApiServer;

beforeAll(async () => {
  s = await startTestApiServer({ namespaces: [NS] });
});
afterAll(async () => {
  await s?.close();
});

function expectStatus(json: Record<string, unknown>, code: number, reason: string): void {
  expect(json).toMatchObject({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    reason,
    code,
  });
  expect(typeof json.message).toBe("string");
}

describe("authentication", () => {
  it("no token, or a wrong one → 401 Status Unauthorized", async () => {
    const variants: Array<Record<string, string>> = [
      {},
      { Authorization: "Bearer wrong" },
      { Authorization: "Basic abc" },
    ];
    for (const headers of variants) {
      const r = await fetch(`${s.url}/api/v1/namespaces`, { headers });
      expect(r.status).toBe(401);
      expectStatus((await r.json()) as Record<string, unknown>, 401, "Unauthorized");
    }
  });

  it("health endpoints answer without a token", async () => {
    for (const p of ["/healthz", "/readyz", "/livez"]) {
      const r = await fetch(s.url + p);
      expect(r.status).toBe(200);
      expect(await r.text()).toBe("ok");
    }
    const v = await fetch(`${s.url}/version`);
    expect(((await v.json()) as { major: string }).major).toBe("1");
  });
});

describe("discovery", () => {
  it("/api, /api/v1, /apis, /apis/coordination.k8s.io/v1", async () => {
    expect((await s.raw("GET", "/api")).json).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    const v1 = (await s.raw("GET", "/api/v1")).json;
    expect(v1.kind).toBe("APIResourceList");
    const names = v1.resources.map((r: { name: string }) => r.name);
    expect(names).toEqual(
      expect.arrayContaining([
        "pods",
        "pods/status",
        "pods/binding",
        "pods/exec",
        "namespaces",
        "secrets",
        "nodes",
        "nodes/status",
      ]),
    );
    const apis = (await s.raw("GET", "/apis")).json;
    expect(apis.groups[0]).toMatchObject({
      name: "coordination.k8s.io",
      preferredVersion: { groupVersion: "coordination.k8s.io/v1" },
    });
    const coord = (await s.raw("GET", "/apis/coordination.k8s.io/v1")).json;
    expect(coord.resources[0]).toMatchObject({ name: "leases", namespaced: true, kind: "Lease" });
  });
});

describe("bad input gets what a real apiserver gives", () => {
  it("malformed JSON → 400 BadRequest", async () => {
    for (const path of [PODS, LEASES]) {
      const r = await s.raw("POST", path, '{"metadata": {"name": ');
      expect(r.status).toBe(400);
      expectStatus(r.json, 400, "BadRequest");
      expect(r.json.message).toMatch(
        /^the object provided is unrecognized \(must be of type (Pod|Lease)\): couldn't get version\/kind; json parse error/,
      );
    }
  });

  it("malformed JSON: Go's encoding/json messages and apimachinery's body summary", async () => {
    const cases: Array<[string, string]> = [
      ['{"metadata": {"name": ', 'unexpected end of JSON input ({"metadata": {"name": )'],
      ["{bad}", "invalid character 'b' looking for beginning of object key string ({bad})"],
      ['{"a" 1}', `invalid character '1' after object key ({"a" 1})`],
      ['{"a": tru}', `invalid character '}' in literal true (expecting 'e') ({"a": tru})`],
      ["", "unexpected end of JSON input (<empty>)"],
      ["nope", "invalid character 'o' in literal null (expecting 'u') (6e6f7065)"],
    ];
    for (const [body, tail] of cases) {
      const r = await s.raw("POST", LEASES, body);
      expect(r.status).toBe(400);
      expect(r.json.message).toBe(
        `the object provided is unrecognized (must be of type Lease): couldn't get version/kind; json parse error: ${tail}`,
      );
    }
  });

  it("malformed JSON in a patch → 400", async () => {
    await s.raw("POST", LEASES, { metadata: { name: "mal" } });
    const r = await s.raw("PATCH", `${LEASES}/mal`, "{oops", "application/merge-patch+json");
    expect(r.status).toBe(400);
    expectStatus(r.json, 400, "BadRequest");
  });

  it("a body that is not an object → 400", async () => {
    const r = await s.raw("POST", LEASES, "[1,2]");
    expect(r.status).toBe(400);
    expectStatus(r.json, 400, "BadRequest");
  });

  it("wrong kind or apiVersion in the body → 400", async () => {
    const k = await s.raw("POST", LEASES, { apiVersion: "v1", kind: "Pod", metadata: { name: "k" } });
    expect(k.status).toBe(400);
    expectStatus(k.json, 400, "BadRequest");
    expect(k.json.message).toContain("cannot be handled as a Lease");
    const v = await s.raw("POST", LEASES, {
      apiVersion: "coordination.k8s.io/v1beta1",
      kind: "Lease",
      metadata: { name: "v" },
    });
    expect(v.status).toBe(400);
    expect(v.json.message).toBe(
      "the API version in the data (coordination.k8s.io/v1beta1) does not match the expected API version (coordination.k8s.io/v1)",
    );
  });

  it("missing name without generateName → 422 Required", async () => {
    const r = await s.raw("POST", LEASES, { metadata: {} });
    expect(r.status).toBe(422);
    expectStatus(r.json, 422, "Invalid");
    expect(r.json.message).toBe(
      'Lease.coordination.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required',
    );
    expect(r.json.details.causes).toEqual([
      {
        reason: "FieldValueRequired",
        message: "Required value: name or generateName is required",
        field: "metadata.name",
      },
    ]);
  });

  it("invalid DNS names → 422 (subdomain for pods/leases, label for namespaces)", async () => {
    const p = await s.raw("POST", PODS, {
      metadata: { name: "Bad_Name" },
      spec: { containers: [{ name: "c", image: "i" }] },
    });
    expect(p.status).toBe(422);
    expect(p.json.message).toContain(
      'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain',
    );
    const n = await s.raw("POST", "/api/v1/namespaces", { metadata: { name: "a.b" } });
    expect(n.status).toBe(422);
    expect(n.json.message).toContain("a lowercase RFC 1123 label");
    const l = await s.raw("POST", LEASES, { metadata: { name: "x".repeat(254) } });
    expect(l.status).toBe(422);
  });

  it("invalid label values → 422", async () => {
    const r = await s.raw("POST", LEASES, { metadata: { name: "lbl", labels: { ok: "not ok!" } } });
    expect(r.status).toBe(422);
    expect(r.json.details.causes[0].field).toBe("metadata.labels");
  });

  it("namespace in the body differing from the URL → 400; name differing on PUT → 400", async () => {
    const r = await s.raw("POST", LEASES, { metadata: { name: "nsm", namespace: "default" } });
    expect(r.status).toBe(400);
    expect(r.json.message).toBe(
      "the namespace of the provided object does not match the namespace sent on the request",
    );
    const c = await s.raw("POST", LEASES, { metadata: { name: "nm" } });
    const u = await s.raw("PUT", `${LEASES}/nm`, {
      ...c.json,
      metadata: { ...c.json.metadata, name: "other" },
    });
    expect(u.status).toBe(400);
    expect(u.json.message).toBe("the name of the object (other) does not match the name on the URL (nm)");
  });

  it('a missing namespace → 404 namespaces "x" not found', async () => {
    const r = await s.raw("POST", "/apis/coordination.k8s.io/v1/namespaces/ghost/leases", {
      metadata: { name: "a" },
    });
    expect(r.status).toBe(404);
    expectStatus(r.json, 404, "NotFound");
    expect(r.json.message).toBe('namespaces "ghost" not found');
    expect(r.json.details).toEqual({ name: "ghost", kind: "namespaces" });
  });

  it("missing objects → 404 with the resource in the message", async () => {
    const p = await s.raw("GET", `${PODS}/x`);
    expect(p.status).toBe(404);
    expect(p.json.message).toBe('pods "x" not found');
    const patch = await s.raw("PATCH", `${LEASES}/x`, {}, "application/merge-patch+json");
    expect(patch.status).toBe(404);
    const put = await s.raw("PUT", `${LEASES}/x`, { metadata: { name: "x", resourceVersion: "1" } });
    expect(put.status).toBe(404);
    const del = await s.raw("DELETE", `${LEASES}/x`);
    expect(del.status).toBe(404);
  });

  it.each([
    "/api/v1/widgets",
    "/apis/apps/v1/deployments",
    "/api/v2/pods",
    "/nothing/here",
    "/api/v1/namespaces/x/pods/y/logs",
    "/api/v1/namespaces/x/nodes",
  ])("unknown path %s → 404 Status", async (path) => {
    const r = await s.raw("GET", path);
    expect(r.status).toBe(404);
    expectStatus(r.json, 404, "NotFound");
    expect(r.json.message).toBe("the server could not find the requested resource");
  });

  it("wrong methods → 405 MethodNotAllowed", async () => {
    expect((await s.raw("PUT", PODS, {})).status).toBe(405);
    expect((await s.raw("POST", `${PODS}/x`, {})).status).toBe(405);
  });

  it("an invalid resourceVersion on PUT → 400; a bad gracePeriodSeconds → 400", async () => {
    const c = await s.raw("POST", LEASES, { metadata: { name: "badrv" } });
    const r = await s.raw("PUT", `${LEASES}/badrv`, {
      ...c.json,
      metadata: { ...c.json.metadata, resourceVersion: "abc" },
    });
    expect(r.status).toBe(400);
    expect((await s.raw("DELETE", `${LEASES}/badrv?gracePeriodSeconds=soon`)).status).toBe(400);
  });

  it("a create body that is not JSON → 415 UnsupportedMediaType", async () => {
    const r = await s.raw("POST", LEASES, "name: x", "text/plain");
    expect(r.status).toBe(415);
    expectStatus(r.json, 415, "UnsupportedMediaType");
  });

  it("a body over 3 MiB → 413", async () => {
    const r = await s.raw("POST", LEASES, {
      metadata: { name: "big", annotations: { a: "x".repeat(3.2 * 1024 * 1024) } },
    });
    expect(r.status).toBe(413);
  });
});

describe("namespaces, secrets, nodes", () => {
  it("namespaces: create/get/list/delete; delete does not cascade (no controllers)", async () => {
    const c = await s.raw("POST", "/api/v1/namespaces", { metadata: { name: "tmp-ns" } });
    expect(c.status).toBe(201);
    expect(c.json.status).toEqual({ phase: "Active" });
    expect(c.json.metadata.labels).toEqual({ "kubernetes.io/metadata.name": "tmp-ns" });
    await s.raw("POST", "/apis/coordination.k8s.io/v1/namespaces/tmp-ns/leases", {
      metadata: { name: "orphan" },
    });
    expect((await s.raw("GET", "/api/v1/namespaces/tmp-ns")).status).toBe(200);
    const l = await s.raw("GET", "/api/v1/namespaces?fieldSelector=metadata.name%3Dtmp-ns");
    expect(l.json.items).toHaveLength(1);
    const d = await s.raw("DELETE", "/api/v1/namespaces/tmp-ns");
    expect(d.status).toBe(200);
    expect((await s.raw("GET", "/api/v1/namespaces/tmp-ns")).status).toBe(404);
    expect((await s.raw("GET", "/apis/coordination.k8s.io/v1/namespaces/tmp-ns/leases/orphan")).status).toBe(
      200,
    );
  });

  it("secrets: stringData folds into base64 data; bad base64 → 400; bad key → 422", async () => {
    const c = await s.raw("POST", `/api/v1/namespaces/${NS}/secrets`, {
      metadata: { name: "tok" },
      stringData: { token: "s3cret" },
    });
    expect(c.status).toBe(201);
    expect(c.json.type).toBe("Opaque");
    expect(c.json.data).toEqual({ token: Buffer.from("s3cret").toString("base64") });
    expect(c.json.stringData).toBeUndefined();
    const g = await s.raw("GET", `/api/v1/namespaces/${NS}/secrets/tok`);
    expect(g.json.data.token).toBe(Buffer.from("s3cret").toString("base64"));
    expect((await s.raw("GET", `/api/v1/namespaces/${NS}/secrets`)).json.kind).toBe("SecretList");
    const b = await s.raw("POST", `/api/v1/namespaces/${NS}/secrets`, {
      metadata: { name: "b" },
      data: { k: "***" },
    });
    expect(b.status).toBe(400);
    const k = await s.raw("POST", `/api/v1/namespaces/${NS}/secrets`, {
      metadata: { name: "k" },
      stringData: { "bad key": "v" },
    });
    expect(k.status).toBe(422);
    expect((await s.raw("DELETE", `/api/v1/namespaces/${NS}/secrets/tok`)).json.status).toBe("Success");
  });

  it("nodes: cluster-scoped; main-resource PUT ignores status; status subresource ignores spec", async () => {
    const c = await s.raw("POST", "/api/v1/nodes", {
      metadata: { name: "n1" },
      status: {
        addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
        conditions: [{ type: "Ready", status: "True" }],
      },
    });
    expect(c.status).toBe(201);
    expect(c.json.status.addresses[0].address).toBe("127.0.0.1");
    const put = await s.raw("PUT", "/api/v1/nodes/n1", {
      ...c.json,
      spec: { unschedulable: true },
      status: { conditions: [] },
    });
    expect(put.json.spec.unschedulable).toBe(true);
    expect(put.json.status.conditions).toHaveLength(1);
    const st = await s.raw(
      "PATCH",
      "/api/v1/nodes/n1/status",
      { spec: { unschedulable: false }, status: { conditions: [{ type: "Ready", status: "False" }] } },
      "application/strategic-merge-patch+json",
    );
    expect(st.json.spec.unschedulable).toBe(true);
    expect(st.json.status.conditions[0].status).toBe("False");
    const l = await s.raw("GET", "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dtrue");
    expect(l.json.items.map((n: { metadata: { name: string } }) => n.metadata.name)).toEqual(["n1"]);
    expect((await s.raw("GET", "/api/v1/namespaces/x/nodes/n1")).status).toBe(404);
  });

  it("list items omit kind/apiVersion, as the real server's typed lists do", async () => {
    await s.raw("POST", LEASES, { metadata: { name: "typed-list" } });
    const l = await s.raw("GET", LEASES);
    expect(l.json.kind).toBe("LeaseList");
    expect(l.json.items[0].kind).toBeUndefined();
  });
});

describe("audit hook", () => {
  it("records user, verb, group, resource, subresource, namespace, name and code", async () => {
    s.audit.length = 0;
    await s.raw("POST", LEASES, { metadata: { name: "aud" } });
    await s.raw("GET", `${LEASES}/aud`);
    await s.raw("GET", `${LEASES}?watch=true&timeoutSeconds=1`);
    await s.raw("PATCH", `${PODS}/nope/status`, {}, "application/merge-patch+json");
    await s.raw("DELETE", LEASES);
    expect(s.audit).toEqual([
      {
        user: "admin",
        verb: "create",
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        namespace: NS,
        code: 201,
      },
      {
        user: "admin",
        verb: "get",
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        namespace: NS,
        name: "aud",
        code: 200,
      },
      {
        user: "admin",
        verb: "watch",
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        namespace: NS,
        code: 200,
      },
      {
        user: "admin",
        verb: "patch",
        group: "",
        version: "v1",
        resource: "pods",
        subresource: "status",
        namespace: NS,
        name: "nope",
        code: 404,
      },
      {
        user: "admin",
        verb: "deletecollection",
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        namespace: NS,
        code: 200,
      },
    ]);
    expect((await s.raw("GET", LEASES)).json.items).toHaveLength(0);
  });
});
