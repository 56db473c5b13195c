import { OBJECT_META } from "../decode.ts";
import type { Cause } from "../status.ts";
import { isObject, type JsonObject } from "../types.ts";
import { field } from "../validation.ts";
import { type Kind, metaFields, str } from "./kind.ts";

const REFERENCE = {
  go: "ObjectReference",
  fields: {
    kind: "string",
    namespace: "string",
    name: "string",
    uid: "string",
    apiVersion: "string",
    resourceVersion: "string",
    fieldPath: "string",
  },
} as const;

function ref(obj: JsonObject): JsonObject {
  return isObject(obj.involvedObject) ? obj.involvedObject : {};
}

/** core/v1 Events, as the scheduler and kubelet write them and `kubectl get events`/`describe` read them. */
export const eventKind: Kind = {
  group: "",
  version: "v1",
  resource: "events",
  kind: "Event",
  listKind: "EventList",
  singular: "event",
  shortNames: ["ev"],
  namespaced: true,
  nameRule: "subdomain",
  schema: {
    go: "Event",
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: OBJECT_META,
      involvedObject: REFERENCE,
      reason: "string",
      message: "string",
      source: { go: "EventSource", fields: { component: "string", host: "string" } },
      firstTimestamp: "time",
      lastTimestamp: "time",
      count: "int32",
      type: "string",
      eventTime: "microtime",
      series: "any",
      action: "string",
      related: REFERENCE,
      reportingComponent: "string",
      reportingInstance: "string",
    },
  },
  subresources: [],
  fieldLabels: [
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
  ],
  fields(obj) {
    const r = ref(obj);
    const source = isObject(obj.source) ? obj.source : {};
    return {
      ...metaFields(obj),
      "involvedObject.kind": str(r.kind) ?? "",
      "involvedObject.namespace": str(r.namespace) ?? "",
      "involvedObject.name": str(r.name) ?? "",
      "involvedObject.uid": str(r.uid) ?? "",
      "involvedObject.apiVersion": str(r.apiVersion) ?? "",
      "involvedObject.resourceVersion": str(r.resourceVersion) ?? "",
      "involvedObject.fieldPath": str(r.fieldPath) ?? "",
      reason: str(obj.reason) ?? "",
      reportingComponent: str(obj.reportingComponent) ?? "",
      source: str(source.component) ?? "",
      type: str(obj.type) ?? "",
    };
  },
  allowUnconditionalUpdate: true,
  returnDeletedObject: false,
  prepareForCreate() {},
  prepareForUpdate() {},
  validate: validateEvent,
  validateUpdate: validateEvent,
};

/** The legacy (core/v1) event validation: the involved object's namespace must be the event's. */
function validateEvent(obj: JsonObject): Cause[] {
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  const ns = str(ref(obj).namespace) ?? "";
  if (ns !== "" && ns !== meta.namespace)
    return [field.invalid("involvedObject.namespace", ns, "does not match event.namespace")];
  return [];
}
