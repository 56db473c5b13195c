import { deepEqual } from "./kinds/kind.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/**
 * Server-side apply's field ownership, reduced: each Apply manager owns the leaf paths of the
 * configuration it last applied (maps are walked key by key; lists and scalars are owned whole,
 * where the real server also merges associative lists such as `containers` by key). An apply sets
 * what it names, removes what the same manager applied before and no longer names (unless another
 * manager owns it too), and conflicts when it changes a value another manager owns.
 */

type Path = string[];

export interface ManagedEntry {
  manager: string;
  operation: string;
  paths: Path[];
  /** The entry as stored, kept as is while the manager's fields do not change. */
  raw: JsonObject;
}

export interface Conflict {
  manager: string;
  field: string;
}

/** Fields the server owns or that name the object: never part of a manager's set. */
const IGNORED_META = new Set([
  "name",
  "namespace",
  "resourceVersion",
  "uid",
  "creationTimestamp",
  "generation",
  "managedFields",
  "selfLink",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
]);

/** The leaf paths `cfg` sets (apiVersion, kind, identity metadata and a reset status left out). */
export function fieldsOf(cfg: JsonObject, ownsStatus: boolean): Path[] {
  const out: Path[] = [];
  const walk = (v: Json, path: Path) => {
    // An empty map sets nothing (as in the real server's field sets): it owns no field.
    if (isObject(v)) {
      for (const [k, sub] of Object.entries(v)) {
        if (path.length === 0 && (k === "apiVersion" || k === "kind" || (k === "status" && !ownsStatus)))
          continue;
        if (path.length === 1 && path[0] === "metadata" && IGNORED_META.has(k)) continue;
        walk(sub, [...path, k]);
      }
    } else if (path.length > 0) out.push(path);
  };
  walk(cfg, []);
  return out;
}

/** `{"f:spec":{"f:holderIdentity":{}}}`: the FieldsV1 encoding of a set of leaf paths. */
export function toFieldsV1(paths: Path[]): JsonObject {
  const root: JsonObject = {};
  for (const p of paths) {
    let node = root;
    for (const k of p) {
      const key = `f:${k}`;
      if (!isObject(node[key])) node[key] = {};
      node = node[key] as JsonObject;
    }
  }
  return root;
}

function fromFieldsV1(v: Json | undefined, prefix: Path = []): Path[] {
  if (!isObject(v)) return [];
  const keys = Object.keys(v).filter((k) => k.startsWith("f:"));
  if (keys.length === 0 || Object.keys(v).some((k) => /^[kvi]:/.test(k)))
    return prefix.length > 0 ? [prefix] : [];
  return keys.flatMap((k) => fromFieldsV1(v[k], [...prefix, k.slice(2)]));
}

export function managedEntries(meta: JsonObject): ManagedEntry[] {
  const list = Array.isArray(meta.managedFields) ? meta.managedFields.filter(isObject) : [];
  return list.map((raw) => ({
    manager: typeof raw.manager === "string" ? raw.manager : "",
    operation: typeof raw.operation === "string" ? raw.operation : "",
    paths: fromFieldsV1(raw.fieldsV1),
    raw,
  }));
}

const same = (a: Path, b: Path) => a.length === b.length && a.every((k, i) => k === b[i]);
/** One path is the other or lies under it: owning either means touching both. */
const overlaps = (a: Path, b: Path) =>
  a.slice(0, b.length).every((k, i) => k === b[i]) || b.slice(0, a.length).every((k, i) => k === a[i]);

function valueAt(obj: Json, path: Path): Json | undefined {
  let v: Json | undefined = obj;
  for (const k of path) v = isObject(v) ? v[k] : undefined;
  return v;
}

function setAt(obj: JsonObject, path: Path, value: Json): void {
  let node = obj;
  for (const k of path.slice(0, -1)) {
    if (!isObject(node[k])) node[k] = {};
    node = node[k] as JsonObject;
  }
  node[path[path.length - 1] ?? ""] = structuredClone(value);
}

function removeAt(obj: JsonObject, path: Path): void {
  const parent = valueAt(obj, path.slice(0, -1));
  if (isObject(parent)) delete parent[path[path.length - 1] ?? ""];
}

/** `.spec.holderIdentity`, as the real conflict message prints a path. */
export function fieldString(path: Path): string {
  return path.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)).join("");
}

export type ApplyResult =
  | { ok: true; obj: JsonObject; managedFields: JsonObject[] }
  | { ok: false; conflicts: Conflict[] };

/**
 * `cfg` applied by `manager` onto `live` (undefined: the object is created). Returns the merged
 * object and its new managedFields, or the conflicts when `force` is off.
 */
export function applyConfig(
  live: JsonObject | undefined,
  cfg: JsonObject,
  opts: { manager: string; apiVersion: string; now: string; force: boolean; ownsStatus: boolean },
): ApplyResult {
  const mine = fieldsOf(cfg, opts.ownsStatus);
  const entries = live && isObject(live.metadata) ? managedEntries(live.metadata) : [];
  const isMine = (e: ManagedEntry) => e.manager === opts.manager && e.operation === "Apply";
  const previous = entries.find(isMine);
  const others = entries.filter((e) => !isMine(e));
  const conflicts: Conflict[] = [];
  if (live) {
    for (const o of others) {
      const taken = o.paths.filter((op) =>
        mine.some((p) => overlaps(p, op) && !deepEqual(valueAt(live, p), valueAt(cfg, p))),
      );
      for (const p of taken) conflicts.push({ manager: o.manager, field: fieldString(p) });
      // A forced apply takes the fields over: the other manager no longer owns them.
      if (opts.force && taken.length > 0) o.paths = o.paths.filter((op) => !taken.includes(op));
    }
  }
  if (conflicts.length > 0 && !opts.force) return { ok: false, conflicts };
  const obj: JsonObject = structuredClone(live ?? cfg);
  if (live) {
    for (const p of previous?.paths ?? []) {
      const stillApplied = mine.some((m) => overlaps(m, p));
      const ownedElsewhere = others.some((o) => o.paths.some((op) => overlaps(op, p)));
      if (!stillApplied && !ownedElsewhere) removeAt(obj, p);
    }
    for (const p of mine) setAt(obj, p, valueAt(cfg, p) ?? null);
  }
  const unchanged =
    previous &&
    previous.paths.length === mine.length &&
    previous.paths.every((p) => mine.some((m) => same(m, p)));
  const own: JsonObject = unchanged
    ? previous.raw
    : {
        manager: opts.manager,
        operation: "Apply",
        apiVersion: opts.apiVersion,
        time: opts.now,
        fieldsType: "FieldsV1",
        fieldsV1: toFieldsV1(mine),
      };
  // The order stays as stored, so an apply that changes nothing leaves the object as it was.
  const managedFields: JsonObject[] = [];
  for (const e of entries) {
    if (e === previous) managedFields.push(own);
    else if (e.paths.length === fromFieldsV1(e.raw.fieldsV1).length) managedFields.push(e.raw);
    else if (e.paths.length > 0) managedFields.push({ ...e.raw, fieldsV1: toFieldsV1(e.paths) });
  }
  if (!previous) managedFields.push(own);
  return { ok: true, obj, managedFields };
}
