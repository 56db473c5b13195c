import { OBJECT_META } from "../decode.ts";
import type { Cause } from "../status.ts";
import { DecodeError } from "../time.ts";
import { isObject, type JsonObject } from "../types.ts";
import { field } from "../validation.ts";
import { deepEqual, type Kind, metaFields, str } from "./kind.ts";

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** stringData is write-only: merged into data (base64) on every write, as the real server does. */
function foldStringData(obj: JsonObject): void {
  const data: JsonObject = isObject(obj.data) ? obj.data : {};
  for (const v of Object.values(data)) {
    if (typeof v !== "string" || !BASE64.test(v) || v.length % 4 !== 0) {
      const at = typeof v === "string" ? Math.max(0, v.search(/[^A-Za-z0-9+/=]/)) : 0;
      throw new DecodeError(`illegal base64 data at input byte ${at}`);
    }
  }
  if (isObject(obj.stringData)) {
    for (const [k, v] of Object.entries(obj.stringData)) {
      if (typeof v === "string") data[k] = Buffer.from(v, "utf8").toString("base64");
    }
  }
  delete obj.stringData;
  if (Object.keys(data).length > 0) obj.data = data;
  else delete obj.data;
}

function validateSecret(obj: JsonObject): Cause[] {
  const errs: Cause[] = [];
  const data = isObject(obj.data) ? obj.data : {};
  let size = 0;
  for (const [k, v] of Object.entries(data)) {
    if (!CONFIG_KEY.test(k)) {
      errs.push(
        field.invalid(
          `data[${k}]`,
          k,
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
      );
    }
    size += typeof v === "string" ? Math.floor((v.length * 3) / 4) : 0;
  }
  if (size > 1048576) errs.push(field.tooLong("data", 1048576));
  return errs;
}

export const secretKind: Kind = {
  group: "",
  version: "v1",
  resource: "secrets",
  kind: "Secret",
  listKind: "SecretList",
  singular: "secret",
  namespaced: true,
  nameRule: "subdomain",
  schema: {
    go: "Secret",
    fields: {
      apiVersion: "string",
      kind: "string",
      metadata: OBJECT_META,
      immutable: "bool",
      data: "stringMap",
      stringData: "stringMap",
      type: "string",
    },
  },
  subresources: [],
  fieldLabels: ["metadata.name", "metadata.namespace", "type"],
  fields(obj) {
    return { ...metaFields(obj), type: str(obj.type) };
  },
  allowUnconditionalUpdate: true,
  returnDeletedObject: false,
  prepareForCreate(obj) {
    obj.type ??= "Opaque";
    foldStringData(obj);
  },
  prepareForUpdate(obj) {
    obj.type ??= "Opaque";
    foldStringData(obj);
  },
  validate: validateSecret,
  validateUpdate(obj, old) {
    const errs = validateSecret(obj);
    if (obj.type !== old.type) errs.push(field.immutable("type", obj.type));
    if (old.immutable === true && (!deepEqual(obj.data, old.data) || obj.immutable !== true)) {
      errs.push(field.forbidden("data", "field is immutable when `immutable` is set"));
    }
    return errs;
  },
};
