import { OBJECT_META } from "../decode.ts";
import type { Cause } from "../status.ts";
import type { JsonObject } from "../types.ts";
import { field } from "../validation.ts";
import { type Kind, metaFields } from "./kind.ts";

export const leaseKind: Kind = {
  group: "coordination.k8s.io",
  version: "v1",
  resource: "leases",
  kind: "Lease",
  listKind: "LeaseList",
  singular: "lease",
  namespaced: true,
  nameRule: "subdomain",
  schema: {
    go: "Lease",
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: OBJECT_META,
      spec: {
        go: "LeaseSpec",
        fields: {
          holderIdentity: "string",
          leaseDurationSeconds: "int32",
          acquireTime: "microtime",
          renewTime: "microtime",
          leaseTransitions: "int32",
          preferredHolder: "string",
          strategy: "string",
        },
      },
    },
  },
  subresources: [],
  fieldLabels: ["metadata.name", "metadata.namespace"],
  fields: metaFields,
  allowUnconditionalUpdate: false,
  returnDeletedObject: false,
  prepareForCreate() {},
  prepareForUpdate() {},
  validate: validateLease,
  validateUpdate: validateLease,
};

function validateLease(obj: JsonObject): Cause[] {
  const errs: Cause[] = [];
  const spec = (obj.spec ?? {}) as JsonObject;
  const d = spec.leaseDurationSeconds;
  if (typeof d === "number" && d <= 0) {
    errs.push(field.invalid("spec.leaseDurationSeconds", d, "must be greater than 0"));
  }
  const t = spec.leaseTransitions;
  if (typeof t === "number" && t < 0) {
    errs.push(field.invalid("spec.leaseTransitions", t, "must be greater than or equal to 0"));
  }
  return errs;
}
