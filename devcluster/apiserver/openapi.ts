import { createHash } from "node:crypto";
import type { Schema } from "./decode.ts";
import { KINDS, type Kind } from "./kinds/index.ts";
import { groupVersion } from "./kinds/kind.ts";
import type { JsonObject } from "./types.ts";

/**
 * OpenAPI v3 documents generated from the kinds devcluster serves: `/openapi/v3` (the index of
 * group-version documents, each URL carrying its content hash, as kube-apiserver's) and
 * `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`. kubectl reads them to learn that the
 * server validates fields itself (the `fieldValidation` parameter of each kind's PATCH, found by
 * `x-kubernetes-group-version-kind`), and then leaves validation to the server.
 *
 * PATCH does not list `application/strategic-merge-patch+json`: the schemas here are the decoder's,
 * without `x-kubernetes-patch-merge-key`, so kubectl must compute strategic merge patches from its
 * compiled-in types (what it does for a server without OpenAPI) rather than from these schemas.
 */

const PATCH_TYPES = [
  "application/json-patch+json",
  "application/merge-patch+json",
  "application/apply-patch+yaml",
];

function gvPath(group: string, version: string): string {
  return group === "" ? `api/${version}` : `apis/${group}/${version}`;
}

/** io.k8s.api.core.v1.Pod, io.k8s.api.coordination.v1.Lease: the real documents' definition names. */
function definitionName(k: Kind, kind: string): string {
  return `io.k8s.api.${k.group === "" ? "core" : (k.group.split(".")[0] ?? k.group)}.${k.version}.${kind}`;
}

function gvk(k: Kind, kind: string): JsonObject {
  return { group: k.group, kind, version: k.version };
}

function toOpenApi(s: Schema): JsonObject {
  switch (s) {
    case "any":
      return { "x-kubernetes-preserve-unknown-fields": true };
    case "string":
      return { type: "string" };
    case "int32":
    case "int64":
      return { type: "integer", format: s };
    case "bool":
      return { type: "boolean" };
    case "microtime":
    case "time":
      return { type: "string", format: "date-time" };
    case "stringMap":
      return { type: "object", additionalProperties: { type: "string", default: "" } };
  }
  if ("items" in s) return { type: "array", items: toOpenApi(s.items) };
  const properties: JsonObject = {};
  for (const [name, sub] of Object.entries(s.fields)) properties[name] = toOpenApi(sub);
  return { type: "object", properties };
}

function param(name: string, description: string, inPath = false): JsonObject {
  return inPath
    ? { name, in: "path", description, required: true, schema: { type: "string", uniqueItems: true } }
    : { name, in: "query", description, schema: { type: "string", uniqueItems: true } };
}

const DRY_RUN = param("dryRun", "When present, indicates that modifications should not be persisted.");
const FIELD_MANAGER = param(
  "fieldManager",
  "fieldManager is a name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION = param(
  "fieldValidation",
  "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default), Strict.",
);
const FORCE: JsonObject = {
  name: "force",
  in: "query",
  description: 'Force is going to "force" Apply requests.',
  schema: { type: "boolean", uniqueItems: true },
};

function ref(k: Kind, kind: string): JsonObject {
  return { $ref: `#/components/schemas/${definitionName(k, kind)}` };
}

function operation(k: Kind, action: string, id: string, kind: string, extra: JsonObject = {}): JsonObject {
  return {
    operationId: id,
    responses: { "200": { description: "OK", content: { "application/json": { schema: ref(k, kind) } } } },
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": gvk(k, k.kind),
    ...extra,
  };
}

function body(k: Kind, types: string[]): JsonObject {
  const content: JsonObject = {};
  for (const t of types)
    content[t] = { schema: t === "application/json" ? ref(k, k.kind) : { type: "object" } };
  return { requestBody: { content, required: true } };
}

function kindPaths(k: Kind): JsonObject {
  const base = `/${gvPath(k.group, k.version)}${k.namespaced ? "/namespaces/{namespace}" : ""}/${k.resource}`;
  const scope = k.namespaced
    ? [param("namespace", "object name and auth scope, such as for teams and projects", true)]
    : [];
  // readCoreV1NamespacedPod, patchCoordinationV1NamespacedLeaseStatus: the real operation ids.
  const cap = (w: string) => w.charAt(0).toUpperCase() + w.slice(1);
  const gv = `${cap(k.group === "" ? "core" : (k.group.split(".")[0] ?? ""))}${cap(k.version)}`;
  const op = (verb: string, suffix = "") =>
    `${verb}${gv}${k.namespaced ? "Namespaced" : ""}${k.kind}${suffix}`;
  const writes = (types: string[]) => ({
    ...body(k, types),
    parameters: [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
  });
  const itemOps = (suffix: string) => ({
    get: operation(k, "get", op("read", suffix), k.kind),
    put: operation(k, "put", op("replace", suffix), k.kind, writes(["application/json"])),
    patch: operation(k, "patch", op("patch", suffix), k.kind, {
      ...body(k, PATCH_TYPES),
      parameters: [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE],
    }),
  });
  const named = [...scope, param("name", `name of the ${k.kind}`, true)];
  const paths: JsonObject = {
    [base]: {
      get: operation(k, "list", op("list"), k.listKind),
      post: operation(k, "post", op("create"), k.kind, writes(["application/json"])),
      delete: operation(k, "deletecollection", op("deleteCollection"), k.kind),
      parameters: scope,
    },
    [`${base}/{name}`]: {
      ...itemOps(""),
      delete: operation(k, "delete", op("delete"), k.kind),
      parameters: named,
    },
  };
  if (k.subresources.includes("status"))
    paths[`${base}/{name}/status`] = { ...itemOps("Status"), parameters: named };
  return paths;
}

function schemas(k: Kind): JsonObject {
  const object = { ...toOpenApi(k.schema), "x-kubernetes-group-version-kind": [gvk(k, k.kind)] };
  const list = {
    type: "object",
    required: ["items"],
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
      items: { type: "array", items: ref(k, k.kind) },
    },
    "x-kubernetes-group-version-kind": [gvk(k, k.listKind)],
  };
  return { [definitionName(k, k.kind)]: object, [definitionName(k, k.listKind)]: list };
}

function gvDocument(group: string, version: string): JsonObject {
  const kinds = KINDS.filter((k) => k.group === group && k.version === version);
  const paths: JsonObject = {};
  const components: JsonObject = {};
  for (const k of kinds) {
    Object.assign(paths, kindPaths(k));
    Object.assign(components, schemas(k));
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: "v1.26.0-devcluster" },
    paths,
    components: { schemas: components },
  };
}

interface Documents {
  index: JsonObject;
  byPath: Map<string, JsonObject>;
}

let documents: Documents | undefined;

/** Built once: the kinds are fixed for the life of the process. */
function build(): Documents {
  const byPath = new Map<string, JsonObject>();
  const paths: JsonObject = {};
  for (const gv of new Set(KINDS.map(groupVersion))) {
    const [group, version] = gv.includes("/") ? (gv.split("/") as [string, string]) : ["", gv];
    const doc = gvDocument(group, version);
    const path = gvPath(group, version);
    const hash = createHash("sha512").update(JSON.stringify(doc)).digest("hex").toUpperCase();
    byPath.set(path, doc);
    paths[path] = { serverRelativeURL: `/openapi/v3/${path}?hash=${hash}` };
  }
  return { index: { paths }, byPath };
}

/** The document at `/openapi/v3[/…]`, or undefined for a path that names no group-version. */
export function openApiV3(pathname: string): JsonObject | undefined {
  documents ??= build();
  if (pathname === "/openapi/v3" || pathname === "/openapi/v3/") return documents.index;
  if (!pathname.startsWith("/openapi/v3/")) return undefined;
  return documents.byPath.get(pathname.slice("/openapi/v3/".length));
}

/** True when the schema leaves a subtree open (`any`) outside metadata, e.g. a Pod's spec. */
function openBeyondMetadata(s: Schema, top = true): boolean {
  if (s === "any") return true;
  if (typeof s === "string") return false;
  if ("items" in s) return openBeyondMetadata(s.items, false);
  return Object.entries(s.fields).some(
    ([name, sub]) => !(top && name === "metadata") && openBeyondMetadata(sub, false),
  );
}

/**
 * Every kind's schema for `/openapi/v2` (`openapi-v2.ts`), references pointing at `#/definitions/`.
 * A kind with an open subtree is listed without its GVK: kubectl computes client-side apply's
 * strategic merge patch from the v2 schema of a GVK it finds there, and an open schema has no
 * `x-kubernetes-patch-merge-key` (a Pod's containers would be replaced as a whole and every apply
 * would report `configured`); without it kubectl uses its compiled-in types, as a real schema would.
 */
export function definitionsV2(): JsonObject {
  const all: JsonObject = {};
  for (const k of KINDS) {
    const defs = schemas(k);
    if (openBeyondMetadata(k.schema))
      delete (defs[definitionName(k, k.kind)] as JsonObject)["x-kubernetes-group-version-kind"];
    Object.assign(all, defs);
  }
  return JSON.parse(
    JSON.stringify(all).replaceAll('"#/components/schemas/', '"#/definitions/'),
  ) as JsonObject;
}

/**
 * Each kind's PATCH for `/openapi/v2`, with its GVK and query parameters (Swagger 2.0 style):
 * kubectl 1.25–1.26 look there, not in v3, for `fieldValidation`.
 */
export function patchPathsV2(): JsonObject {
  documents ??= build();
  const out: JsonObject = {};
  for (const doc of documents.byPath.values()) {
    for (const [path, item] of Object.entries(doc.paths as Record<string, JsonObject>)) {
      const patch = item.patch as JsonObject | undefined;
      if (!patch) continue;
      const parameters = (patch.parameters as JsonObject[]).map((p) => ({
        name: p.name ?? null,
        in: p.in ?? null,
        type: p.name === "force" ? "boolean" : "string",
        uniqueItems: true,
      }));
      out[path] = {
        patch: {
          operationId: patch.operationId ?? null,
          parameters,
          responses: { "200": { description: "OK" } },
          "x-kubernetes-action": "patch",
          "x-kubernetes-group-version-kind": patch["x-kubernetes-group-version-kind"] ?? null,
        },
      };
    }
  }
  return out;
}
