import type { Kind } from "./kinds/index.ts";
import { withType } from "./objects.ts";
import { printerFor } from "./printers.ts";
import { badRequest } from "./status.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/**
 * `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get` sends first): the
 * meta.k8s.io Table version the client asked for, or undefined when it did not ask for a Table
 * (or listed plain JSON before it).
 */
export function tableVersion(accept: string): "v1" | "v1beta1" | undefined {
  for (const range of accept.split(",")) {
    const [type, ...params] = range.split(";").map((p) => p.trim());
    const p = new Map(params.map((kv) => kv.split("=").map((x) => x.trim()) as [string, string]));
    if (type !== "application/json") continue;
    if (p.get("as") !== "Table") return undefined;
    const v = p.get("v");
    if (p.get("g") === "meta.k8s.io" && (v === "v1" || v === "v1beta1")) return v;
  }
  return undefined;
}

/** `includeObject`: None, Metadata (default: a PartialObjectMetadata per row) or Object. */
function rowObject(kind: Kind, item: JsonObject, include: string, tableApi: string): JsonObject | undefined {
  if (include === "None") return undefined;
  // The whole object, typed (list items are served without kind/apiVersion): kubectl decodes it for --sort-by.
  if (include === "Object") return withType(kind, item);
  return {
    kind: "PartialObjectMetadata",
    apiVersion: tableApi,
    metadata: isObject(item.metadata) ? item.metadata : {},
  };
}

/** `includeObject`, checked: a watch checks it before its first event (a throw later would reach the store's writer). */
export function includeObjectOf(query: URLSearchParams): string {
  const include = query.get("includeObject") ?? "Metadata";
  if (!["None", "Metadata", "Object"].includes(include)) {
    throw badRequest(
      `includeObject: Unsupported value: "${include}": supported values: "Metadata", "None", "Object"`,
    );
  }
  return include;
}

/** A get/list reply (one object or a `…List`) as a meta.k8s.io Table, as the real server's TableConvertor makes it. */
export function toTable(
  kind: Kind,
  body: JsonObject,
  version: "v1" | "v1beta1",
  query: URLSearchParams,
  now = Date.now(),
): JsonObject {
  const include = includeObjectOf(query);
  const tableApi = `meta.k8s.io/${version}`;
  const printer = printerFor(kind);
  const isList = Array.isArray(body.items);
  const items = isList ? (body.items as Json[]).filter(isObject) : [body];
  const rows = items.map((item) => {
    const row: JsonObject = { cells: printer.cells(item, now) };
    const conditions = printer.conditions?.(item);
    if (conditions) row.conditions = conditions;
    const o = rowObject(kind, item, include, tableApi);
    if (o) row.object = o;
    return row;
  });
  const metadata: JsonObject = {};
  const listMeta = isObject(body.metadata) ? body.metadata : {};
  if (isList) {
    for (const k of ["resourceVersion", "continue", "remainingItemCount"])
      if (listMeta[k] !== undefined) metadata[k] = listMeta[k] as Json;
  } else {
    const rv = listMeta.resourceVersion;
    if (typeof rv === "string") metadata.resourceVersion = rv;
  }
  const columnDefinitions = printer.columns.map((c) => ({ ...c }));
  return { kind: "Table", apiVersion: tableApi, metadata, columnDefinitions, rows };
}
