// devcluster's /openapi/v3 documents, generated from its kinds: complete (every kind, every
// group-version), self-consistent (references resolve, operation ids unique, path parameters
// declared) and carrying what kubectl looks for (the PATCH of each GVK with `fieldValidation`).
import { describe, expect, it } from "vitest";
import { KINDS } from "../../devcluster/apiserver/kinds/index.ts";
import { groupVersion } from "../../devcluster/apiserver/kinds/kind.ts";
import { openApiV3 } from "../../devcluster/apiserver/openapi.ts";
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
