import { DecodeError, jsonType, parseMicroTime, parseTime } from "./time.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/**
 * A small typed schema: enough of each kind's Go struct to reproduce the real decoder's behaviour
 * (type errors → 400, MicroTime/Time parsing, unknown fields dropped with a warning or rejected
 * under `fieldValidation=Strict`). `any` leaves a subtree alone.
 */
export type Schema =
  | "any"
  | "string"
  | "int32"
  | "int64"
  | "bool"
  | "microtime"
  | "time"
  | "stringMap"
  | { go: string; fields: Record<string, Schema> }
  | { items: Schema };

export const OBJECT_META: Schema = {
  go: "ObjectMeta",
  fields: {
    name: "string",
    generateName: "string",
    namespace: "string",
    selfLink: "string",
    uid: "string",
    resourceVersion: "string",
    generation: "int64",
    creationTimestamp: "time",
    deletionTimestamp: "time",
    deletionGracePeriodSeconds: "int64",
    labels: "stringMap",
    annotations: "stringMap",
    ownerReferences: "any",
    finalizers: { items: "string" },
    managedFields: "any",
  },
};

export interface DecodeResult {
  unknown: string[];
}

const INT32_MAX = 2147483647;

/** Decodes `value` against `schema` in place; returns the unknown field paths it dropped. */
export function decodeInto(obj: JsonObject, schema: Schema): DecodeResult {
  const unknown: string[] = [];
  walk(obj, schema, "", "", unknown);
  return { unknown };
}

function typeError(v: Json, goStruct: string, path: string, goType: string): never {
  throw new DecodeError(
    `json: cannot unmarshal ${jsonType(v) === "object" ? "object" : jsonType(v)} into Go struct field ${goStruct}.${path} of type ${goType}`,
  );
}

function walk(v: Json, schema: Schema, path: string, goStruct: string, unknown: string[]): Json | undefined {
  if (schema === "any") return v;
  if (v === null) return undefined;
  switch (schema) {
    case "string":
      if (typeof v !== "string") typeError(v, goStruct, path, "string");
      return v;
    case "bool":
      if (typeof v !== "boolean") typeError(v, goStruct, path, "bool");
      return v;
    case "int32":
    case "int64":
      if (typeof v !== "number") typeError(v, goStruct, path, schema);
      if (!Number.isInteger(v)) {
        throw new DecodeError(
          `json: cannot unmarshal number ${v} into Go struct field ${goStruct}.${path} of type ${schema}`,
        );
      }
      if (schema === "int32" && (v > INT32_MAX || v < -INT32_MAX - 1)) {
        throw new DecodeError(
          `json: cannot unmarshal number ${v} into Go struct field ${goStruct}.${path} of type int32`,
        );
      }
      return v;
    case "microtime":
      if (typeof v !== "string") typeError(v, goStruct, path, "string");
      return parseMicroTime(v);
    case "time":
      if (typeof v !== "string") typeError(v, goStruct, path, "string");
      return v === "" ? undefined : parseTime(v);
    case "stringMap":
      if (!isObject(v)) typeError(v, goStruct, path, "map[string]string");
      for (const x of Object.values(v)) if (typeof x !== "string") typeError(x, goStruct, path, "string");
      return v;
  }
  if ("items" in schema) {
    if (!Array.isArray(v)) typeError(v, goStruct, path, "[]");
    for (let i = 0; i < v.length; i++) {
      const r = walk(v[i] as Json, schema.items, path, goStruct, unknown);
      v[i] = r === undefined ? null : r;
    }
    return v;
  }
  if (!isObject(v)) typeError(v, goStruct, path, schema.go);
  for (const k of Object.keys(v)) {
    const sub = schema.fields[k];
    const p = path === "" ? k : `${path}.${k}`;
    if (sub === undefined) {
      unknown.push(p);
      delete v[k];
      continue;
    }
    const r = walk(v[k] as Json, sub, p, schema.go, unknown);
    if (r === undefined) delete v[k];
    else v[k] = r;
  }
  return v;
}
