import type { Schema } from "../decode.ts";
import type { Cause } from "../status.ts";
import type { JsonObject } from "../types.ts";
import type { NameRule } from "../validation.ts";

/** Everything the generic handlers need to know about one resource (the registry "strategy"). */
export interface Kind {
  group: string;
  version: string;
  /** Plural resource name, e.g. `pods`. */
  resource: string;
  kind: string;
  listKind: string;
  singular: string;
  shortNames?: string[];
  namespaced: boolean;
  nameRule: NameRule;
  schema: Schema;
  /** Subresources beyond the object itself. */
  subresources: Array<"status" | "binding" | "exec" | "log">;
  /** Field selector labels the real server supports for this resource. */
  fieldLabels: readonly string[];
  fields(obj: JsonObject): Record<string, string | undefined>;
  /** PUT without resourceVersion allowed (false for Leases: 422). */
  allowUnconditionalUpdate: boolean;
  /** DELETE answers with the object (pods, namespaces) rather than a Success Status. */
  returnDeletedObject: boolean;
  /** Defaults and server-owned fields on create (e.g. pod status reset). */
  prepareForCreate(obj: JsonObject): void;
  /** Main-resource update: copy what the main resource may not change (e.g. status) from old. */
  prepareForUpdate(obj: JsonObject, old: JsonObject): void;
  /** Status update: copy everything but status (and what else the real strategy allows) from old. */
  prepareForStatusUpdate?(obj: JsonObject, old: JsonObject): void;
  validate(obj: JsonObject): Cause[];
  validateUpdate(obj: JsonObject, old: JsonObject): Cause[];
  validateStatusUpdate?(obj: JsonObject, old: JsonObject): Cause[];
  /** Grace period for DELETE given the requested one; undefined for kinds deleted at once. */
  gracePeriod?(obj: JsonObject, requested: number | undefined): number;
  /** True when the change bumps metadata.generation. */
  specChanged?(obj: JsonObject, old: JsonObject): boolean;
}

export function groupVersion(k: Kind): string {
  return k.group === "" ? k.version : `${k.group}/${k.version}`;
}

export function resourceId(k: Kind): string {
  return `${k.group}/${k.resource}`;
}

export function metaFields(obj: JsonObject): Record<string, string | undefined> {
  const m = (obj.metadata ?? {}) as JsonObject;
  return {
    "metadata.name": typeof m.name === "string" ? m.name : undefined,
    "metadata.namespace": typeof m.namespace === "string" ? m.namespace : undefined,
  };
}

export function specOf(obj: JsonObject): JsonObject {
  const s = obj.spec;
  if (typeof s === "object" && s !== null && !Array.isArray(s)) return s;
  const fresh: JsonObject = {};
  obj.spec = fresh;
  return fresh;
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v === "object" && v !== null) {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = sortKeys((v as Record<string, unknown>)[k]);
    return o;
  }
  return v;
}
