import * as k8s from "@kubernetes/client-node";
import * as models from "kubernetes-models";
import type { KObject } from "../../k8s/render.ts";

type Validatable = new (data: unknown) => { validate(): void };
type ModelTree = Record<
  string,
  Record<string, Record<string, Validatable | undefined> | undefined> | undefined
>;

/** "rbac.authorization.k8s.io/v1" → models.rbacAuthorizationK8sIo.v1, "v1" → models.v1. */
function modelClass(apiVersion: string, kind: string): Validatable | undefined {
  const tree = models as unknown as ModelTree & Record<string, Record<string, Validatable | undefined>>;
  const slash = apiVersion.lastIndexOf("/");
  if (slash < 0) return tree[apiVersion]?.[kind];
  const group = apiVersion
    .slice(0, slash)
    .split(".")
    .map((p, i) => (i === 0 ? p : p.charAt(0).toUpperCase() + p.slice(1)))
    .join("");
  return tree[group]?.[apiVersion.slice(slash + 1)]?.[kind];
}

/** kubernetes-models' OpenAPI validation (types, enums, required fields), offline. */
export function schemaErrors(o: KObject): string | undefined {
  const Model = modelClass(o.apiVersion, o.kind);
  if (!Model) return `no OpenAPI model for ${o.apiVersion} ${o.kind}`;
  try {
    new Model(o).validate();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

type TypeMap = Array<{ name: string; baseName: string; type: string }>;
type WithTypeMap = { getAttributeTypeMap(): TypeMap };

/**
 * Fields the API does not know (a typo such as `readinesProbe` passes the OpenAPI schemas, which
 * allow extra properties, and a real API server silently drops it): walks the object along
 * client-node's generated attribute maps.
 */
export function unknownFields(o: KObject): string[] {
  const out: string[] = [];
  const classes = k8s as unknown as Record<string, WithTypeMap | undefined>;
  const walk = (v: unknown, type: string, path: string) => {
    if (v === null || v === undefined) return;
    const arr = /^Array<(.+)>$/.exec(type);
    if (arr) {
      if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, arr[1] ?? "any", `${path}[${i}]`);
      return;
    }
    const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
    if (map) {
      for (const [k, x] of Object.entries(v as Record<string, unknown>))
        walk(x, map[1] ?? "any", `${path}.${k}`);
      return;
    }
    const cls = classes[type];
    if (!cls?.getAttributeTypeMap || typeof v !== "object") return;
    const attrs = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const t = attrs.get(k);
      if (t === undefined) out.push(`${path}.${k}`);
      else walk(x, t, `${path}.${k}`);
    }
  };
  const version = o.apiVersion.split("/").at(-1) ?? "v1";
  const typeName = `${version.charAt(0).toUpperCase()}${version.slice(1)}${o.kind}`;
  if (!classes[typeName]) return [`no client-node model ${typeName}`];
  walk(o, typeName, `${o.kind}/${o.metadata.name}`);
  return out;
}
