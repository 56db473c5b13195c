import { OBJECT_META } from "../decode.ts";
import { isObject, type JsonObject } from "../types.ts";
import { field, isValidIP } from "../validation.ts";
import { type Kind, metaFields } from "./kind.ts";

const CONDITION = {
  go: "NodeCondition",
  fields: {
    type: "string",
    status: "string",
    lastHeartbeatTime: "time",
    lastTransitionTime: "time",
    reason: "string",
    message: "string",
  },
} as const;

export const nodeKind: Kind = {
  group: "",
  version: "v1",
  resource: "nodes",
  kind: "Node",
  listKind: "NodeList",
  singular: "node",
  shortNames: ["no"],
  namespaced: false,
  nameRule: "subdomain",
  schema: {
    go: "Node",
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: OBJECT_META,
      spec: "any",
      status: {
        go: "NodeStatus",
        fields: {
          capacity: "any",
          allocatable: "any",
          phase: "string",
          conditions: { items: CONDITION },
          addresses: { items: { go: "NodeAddress", fields: { type: "string", address: "string" } } },
          daemonEndpoints: "any",
          nodeInfo: "any",
          images: "any",
          volumesInUse: "any",
          volumesAttached: "any",
          config: "any",
          runtimeHandlers: "any",
          features: "any",
        },
      },
    },
  },
  subresources: ["status"],
  fieldLabels: ["metadata.name", "spec.unschedulable"],
  fields(obj) {
    const spec = (obj.spec ?? {}) as JsonObject;
    return {
      "metadata.name": metaFields(obj)["metadata.name"],
      "spec.unschedulable": spec.unschedulable === true ? "true" : "false",
    };
  },
  allowUnconditionalUpdate: true,
  returnDeletedObject: false,
  prepareForCreate(obj) {
    obj.spec ??= {};
  },
  prepareForUpdate(obj, old) {
    if (old.status === undefined) delete obj.status;
    else obj.status = structuredClone(old.status);
  },
  prepareForStatusUpdate(obj, old) {
    obj.spec = structuredClone(old.spec ?? {});
  },
  validate: validateNode,
  validateUpdate: validateNode,
  validateStatusUpdate: validateNode,
};

function validateNode(obj: JsonObject) {
  const status = isObject(obj.status) ? obj.status : {};
  const addrs = Array.isArray(status.addresses) ? status.addresses.filter(isObject) : [];
  return addrs.flatMap((a, i) =>
    a.type === "InternalIP" && typeof a.address === "string" && !isValidIP(a.address)
      ? [field.invalid(`status.addresses[${i}].address`, a.address, "must be a valid IP address")]
      : [],
  );
}
