import { OBJECT_META } from "../decode.ts";
import { isObject, type JsonObject } from "../types.ts";
import { type Kind, metaFields, str } from "./kind.ts";

export const namespaceKind: Kind = {
  group: "",
  version: "v1",
  resource: "namespaces",
  kind: "Namespace",
  listKind: "NamespaceList",
  singular: "namespace",
  shortNames: ["ns"],
  namespaced: false,
  nameRule: "label",
  schema: {
    go: "Namespace",
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: OBJECT_META,
      spec: { go: "NamespaceSpec", fields: { finalizers: { items: "string" } } },
      status: "any",
    },
  },
  subresources: ["status"],
  fieldLabels: ["metadata.name", "status.phase"],
  fields(obj) {
    const status = (obj.status ?? {}) as JsonObject;
    return { "metadata.name": metaFields(obj)["metadata.name"], "status.phase": str(status.phase) };
  },
  allowUnconditionalUpdate: true,
  returnDeletedObject: true,
  prepareForCreate(obj) {
    const meta = obj.metadata as JsonObject;
    const labels = isObject(meta.labels) ? meta.labels : {};
    // The real apiserver labels every namespace with its own name.
    if (typeof meta.name === "string") labels["kubernetes.io/metadata.name"] = meta.name;
    meta.labels = labels;
    obj.spec = { finalizers: ["kubernetes"] };
    obj.status = { phase: "Active" };
  },
  prepareForUpdate(obj, old) {
    obj.spec = structuredClone(old.spec ?? {});
    obj.status = structuredClone(old.status ?? {});
    const meta = obj.metadata as JsonObject;
    const labels = isObject(meta.labels) ? meta.labels : {};
    if (typeof meta.name === "string") labels["kubernetes.io/metadata.name"] = meta.name;
    meta.labels = labels;
  },
  prepareForStatusUpdate(obj, old) {
    obj.spec = structuredClone(old.spec ?? {});
  },
  validate: () => [],
  validateUpdate: () => [],
};
