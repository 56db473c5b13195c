// devcluster's /openapi/v3 documents, generated from its kinds: complete (every kind, every
// group-version), self-consistent (references resolve, operation ids unique, path parameters
// declared) and carrying what kubectl looks for (the PATCH of each GVK with `fieldValidation`).
import { describe, expect, it } from "vitest";
import { KINDS } from "../../devcluster/apiserver/kinds/index.ts";
import { groupVersion } from "../../devcluster/apiserver/kinds/kind.ts";
import { openApiV3 } from "../../devcluster/apiserver/openapi.ts";
import { openApiV2Json, openApiV2Protobuf } from "../../devcluster/apiserver/openapi-v2.ts";
import { isObject, type Json, type JsonObject } from "../../devcluster/apiserver/types.ts";

function refs(v: Json, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) refs(x, out);
  else if (isObject(v))
    for (const [k, x] of Object.entries(v)) {
      if (k === "$ref" && typeof x === "string") out.push(x);
      else refs(x, out);
    }
  return out;
}

const index = openApiV3("/openapi/v3") as { paths: Record<string, { serverRelativeURL: string }> };

describe("devcluster OpenAPI v3", () => {
  it("indexes one document per group-version, each reachable at its hashed URL", () => {
    const gvs = [...new Set(KINDS.map(groupVersion))].map((gv) =>
      gv.includes("/") ? `apis/${gv}` : `api/${gv}`,
    );
    expect(Object.keys(index.paths).sort()).toEqual(gvs.sort());
    for (const [path, { serverRelativeURL }] of Object.entries(index.paths)) {
      expect(serverRelativeURL).toMatch(new RegExp(`^/openapi/v3/${path}\\?hash=[0-9A-F]{128}$`));
      expect(openApiV3(new URL(serverRelativeURL, "https://x").pathname)).toMatchObject({ openapi: "3.0.0" });
    }
    expect(openApiV3("/openapi/v3/apis/apps/v1")).toBeUndefined();
  });

  for (const path of Object.keys(index.paths)) {
    it(`${path}: references resolve, operation ids are unique, path parameters are declared`, () => {
      const doc = openApiV3(`/openapi/v3/${path}`) as JsonObject & {
        paths: Record<string, Record<string, JsonObject | JsonObject[]>>;
        components: { schemas: Record<string, JsonObject> };
      };
      for (const r of refs(doc)) {
        expect(r).toMatch(/^#\/components\/schemas\//);
        expect(doc.components.schemas[r.slice("#/components/schemas/".length)], r).toBeDefined();
      }
      const ids: string[] = [];
      for (const [p, item] of Object.entries(doc.paths)) {
        const declared = ((item.parameters ?? []) as JsonObject[])
          .filter((x) => x.in === "path")
          .map((x) => x.name);
        expect(declared.sort(), p).toEqual([...p.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort());
        for (const [method, op] of Object.entries(item)) {
          if (method === "parameters" || Array.isArray(op)) continue;
          expect(op.responses, `${method} ${p}`).toBeDefined();
          ids.push(String(op.operationId));
        }
      }
      expect(new Set(ids).size).toBe(ids.length);
    });
  }

  it("every kind's PATCH carries its GVK and fieldValidation (what kubectl checks before leaving validation to the server)", () => {
    for (const k of KINDS) {
      const gvPath = k.group === "" ? `api/${k.version}` : `apis/${k.group}/${k.version}`;
      const doc = openApiV3(`/openapi/v3/${gvPath}`) as { paths: Record<string, { patch?: JsonObject }> };
      const patch = Object.values(doc.paths).find((p) => {
        const gvk = p.patch?.["x-kubernetes-group-version-kind"];
        return isObject(gvk) && gvk.kind === k.kind;
      })?.patch;
      expect(patch, k.kind).toBeDefined();
      expect(((patch?.parameters ?? []) as JsonObject[]).map((x) => x.name)).toContain("fieldValidation");
      const content = ((patch?.requestBody ?? { content: {} }) as { content: JsonObject }).content;
      expect(Object.keys(content)).not.toContain("application/strategic-merge-patch+json");
    }
  });
});

describe("devcluster OpenAPI v2", () => {
  it("lists every kind's definition and PATCH; Pod (open spec) without its GVK so kubectl patches it from compiled-in types", () => {
    const doc = openApiV2Json() as {
      definitions: Record<string, JsonObject>;
      paths: Record<string, { patch: JsonObject }>;
    };
    const gvkOf = (name: string) => doc.definitions[name]?.["x-kubernetes-group-version-kind"];
    expect(gvkOf("io.k8s.api.coordination.v1.Lease")).toEqual([
      { group: "coordination.k8s.io", kind: "Lease", version: "v1" },
    ]);
    expect(doc.definitions["io.k8s.api.core.v1.Pod"]).toBeDefined();
    expect(gvkOf("io.k8s.api.core.v1.Pod")).toBeUndefined();
    for (const ref of refs(doc as unknown as Json))
      expect(doc.definitions[ref.replace("#/definitions/", "")], ref).toBeDefined();
    const patches = Object.values(doc.paths).map((p) => p.patch);
    expect(patches).toHaveLength(
      KINDS.length + KINDS.filter((k) => k.subresources.includes("status")).length,
    );
    for (const p of patches)
      expect((p.parameters as JsonObject[]).find((x) => x.name === "fieldValidation")).toMatchObject({
        in: "query",
      });
    // The protobuf starts with Document.swagger (field 1): "2.0".
    expect([...openApiV2Protobuf().subarray(0, 5)]).toEqual([0x0a, 3, ...Buffer.from("2.0")]);
  });
});
