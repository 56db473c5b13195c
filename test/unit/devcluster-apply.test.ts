// Server-side apply's field ownership in devcluster's API server (apply.ts): what a manager sets,
// what it removes when it stops naming a field, and when another manager's field is a conflict.
import { describe, expect, it } from "vitest";
import { type ApplyResult, applyConfig, fieldsOf, toFieldsV1 } from "../../devcluster/apiserver/apply.ts";
import type { JsonObject } from "../../devcluster/apiserver/types.ts";

const T = "2026-12-07T12:00:00Z";

function lease(labels: JsonObject, spec: JsonObject): JsonObject {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name: "l", namespace: "default", labels },
    spec,
  };
}

function apply(live: JsonObject | undefined, cfg: JsonObject, manager: string, force = false): ApplyResult {
  return applyConfig(live, cfg, {
    manager,
    apiVersion: "coordination.k8s.io/v1",
    now: T,
    force,
    ownsStatus: false,
  });
}

function ok(r: ApplyResult): JsonObject {
  if (!r.ok) throw new Error(`conflicts: ${JSON.stringify(r.conflicts)}`);
  return { ...r.obj, metadata: { ...(r.obj.metadata as JsonObject), managedFields: r.managedFields } };
}

describe("server-side apply field sets", () => {
  it("owns leaf fields, map by map; identity metadata, apiVersion, kind and (on the main resource) status are not owned", () => {
    const cfg = { ...lease({ app: "x" }, { holderIdentity: "a", empty: {} }), status: { x: 1 } };
    expect(fieldsOf(cfg, false)).toEqual([
      ["metadata", "labels", "app"],
      ["spec", "holderIdentity"],
    ]);
    expect(toFieldsV1(fieldsOf(cfg, false))).toEqual({
      "f:metadata": { "f:labels": { "f:app": {} } },
      "f:spec": { "f:holderIdentity": {} },
    });
  });

  it("a first apply creates the object with the manager's entry", () => {
    const created = ok(apply(undefined, lease({ app: "x" }, { holderIdentity: "a" }), "kubectl"));
    expect((created.metadata as JsonObject).managedFields).toEqual([
      {
        manager: "kubectl",
        operation: "Apply",
        apiVersion: "coordination.k8s.io/v1",
        time: T,
        fieldsType: "FieldsV1",
        fieldsV1: { "f:metadata": { "f:labels": { "f:app": {} } }, "f:spec": { "f:holderIdentity": {} } },
      },
    ]);
  });

  it("re-applying the same configuration changes nothing (the entry keeps its time)", () => {
    const cfg = lease({ app: "x" }, { holderIdentity: "a" });
    const live = ok(apply(undefined, cfg, "kubectl"));
    const again = applyConfig(live, structuredClone(cfg), {
      manager: "kubectl",
      apiVersion: "coordination.k8s.io/v1",
      now: "2026-12-07T13:00:00Z",
      force: false,
      ownsStatus: false,
    });
    expect(ok(again)).toEqual(live);
  });

  it("another manager changing an owned value conflicts; --force-conflicts takes the field over", () => {
    const live = ok(
      apply(undefined, lease({ app: "x" }, { holderIdentity: "a", leaseDurationSeconds: 10 }), "kubectl"),
    );
    const theirs = lease({}, { holderIdentity: "b" });
    expect(apply(live, structuredClone(theirs), "agent")).toEqual({
      ok: false,
      conflicts: [{ manager: "kubectl", field: ".spec.holderIdentity" }],
    });
    // The same value is no conflict: both own it.
    const shared = ok(apply(live, lease({}, { holderIdentity: "a" }), "agent"));
    expect((shared.metadata as JsonObject).managedFields).toHaveLength(2);
    const forced = ok(apply(live, structuredClone(theirs), "agent", true));
    expect((forced.spec as JsonObject).holderIdentity).toBe("b");
    const managed = (forced.metadata as JsonObject).managedFields as JsonObject[];
    expect(managed.map((m) => [m.manager, m.fieldsV1])).toEqual([
      [
        "kubectl",
        { "f:metadata": { "f:labels": { "f:app": {} } }, "f:spec": { "f:leaseDurationSeconds": {} } },
      ],
      ["agent", { "f:spec": { "f:holderIdentity": {} } }],
    ]);
  });

  it("a field the manager no longer applies is removed, unless another manager owns it", () => {
    const live = ok(
      apply(
        undefined,
        lease({ a: "1", b: "2" }, { holderIdentity: "a", leaseDurationSeconds: 10 }),
        "kubectl",
      ),
    );
    const both = ok(apply(live, lease({}, { holderIdentity: "a" }), "agent"));
    const after = ok(apply(both, lease({ a: "1" }, {}), "kubectl"));
    expect((after.metadata as JsonObject).labels).toEqual({ a: "1" });
    expect(after.spec).toEqual({ holderIdentity: "a" });
  });
});
