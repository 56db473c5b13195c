import { randomBytes, randomUUID } from "node:crypto";
import { groupVersion, type Kind, resourceId } from "./kinds/kind.ts";
import { notFound, type Target } from "./status.ts";
import type { Store } from "./store.ts";
import { isObject, type JsonObject } from "./types.ts";

export function metaOf(obj: JsonObject): JsonObject {
  if (!isObject(obj.metadata)) obj.metadata = {};
  return obj.metadata as JsonObject;
}

export function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

export function target(kind: Kind, name: string): Target {
  return { name, group: kind.group, kind: kind.resource };
}

/** The object as served: with kind/apiVersion (list items omit them, like the real server). */
export function withType(kind: Kind, obj: JsonObject): JsonObject {
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  return { kind: kind.kind, apiVersion: groupVersion(kind), ...rest };
}

export function withoutType(obj: JsonObject): JsonObject {
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  return rest;
}

export function getOr404(store: Store, kind: Kind, namespace: string | undefined, name: string): JsonObject {
  const o = store.get(resourceId(kind), keyOf(kind.namespaced ? namespace : undefined, name));
  if (!o) throw notFound(target(kind, name));
  return o;
}

export function newUid(): string {
  return randomUUID();
}

const GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

/** Same shape as the apiserver's names.SimpleNameGenerator: prefix (max 58 chars) + 5 random chars. */
export function generateName(prefix: string): string {
  const base = prefix.length > 58 ? prefix.slice(0, 58) : prefix;
  const bytes = randomBytes(5);
  let suffix = "";
  for (const b of bytes) suffix += GENERATE_ALPHABET[b % GENERATE_ALPHABET.length];
  return base + suffix;
}

export function rvOf(obj: JsonObject): string | undefined {
  const v = metaOf(obj).resourceVersion;
  return typeof v === "string" && v !== "" ? v : undefined;
}

export function labelsOf(obj: JsonObject): Record<string, string | undefined> {
  const l = metaOf(obj).labels;
  const out: Record<string, string> = {};
  if (isObject(l)) for (const [k, v] of Object.entries(l)) if (typeof v === "string") out[k] = v;
  return out;
}
