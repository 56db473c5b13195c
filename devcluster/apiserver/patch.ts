import { clone, isObject, type Json, type JsonObject } from "./types.ts";

/** A patch that cannot be applied; `code` is what the real server answers (400 or 422). */
export class PatchError extends Error {
  readonly code: 400 | 422;
  constructor(code: 400 | 422, message: string) {
    super(message);
    this.code = code;
  }
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k] ?? null, v);
  }
  return out;
}

/** List fields merged by key in a strategic merge patch (the subset the project's types need). */
const MERGE_KEYS: Record<string, string> = {
  conditions: "type",
  containerStatuses: "name",
  initContainerStatuses: "name",
  ephemeralContainerStatuses: "name",
  containers: "name",
  initContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  ports: "containerPort",
  addresses: "type",
  podIPs: "ip",
  tolerations: "key",
};

/**
 * Strategic merge patch, reduced: a merge patch whose lists named in MERGE_KEYS merge element-wise by
 * key; `$patch: delete|replace` and `$setElementOrder/…`/`$retainKeys` directives are understood.
 */
export function strategicMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === "replace") {
    const { $patch: _ignored, ...rest } = patch;
    return clone(rest);
  }
  if (patch.$patch === "delete") return null;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$setElementOrder/") || k === "$retainKeys" || k === "$patch") continue;
    if (k.startsWith("$deleteFromPrimitiveList/")) {
      const list = out[k.slice("$deleteFromPrimitiveList/".length)];
      if (Array.isArray(list) && Array.isArray(v)) {
        out[k.slice("$deleteFromPrimitiveList/".length)] = list.filter(
          (x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)),
        );
      }
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const mergeKey = MERGE_KEYS[k];
    const cur = out[k];
    if (mergeKey !== undefined && Array.isArray(v) && (Array.isArray(cur) || cur === undefined)) {
      out[k] = mergeList(cur ?? [], v, mergeKey);
    } else {
      out[k] = strategicMergePatch(cur ?? null, v);
    }
  }
  return out;
}

function mergeList(cur: Json[], patch: Json[], key: string): Json[] {
  const out = cur.map((x) => clone(x));
  for (const p of patch) {
    if (!isObject(p) || p[key] === undefined) {
      out.push(clone(p));
      continue;
    }
    const idx = out.findIndex((x) => isObject(x) && x[key] === p[key]);
    if (p.$patch === "delete") {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMergePatch(out[idx] ?? null, p);
    else out.push(strategicMergePatch(null, p));
  }
  return out;
}

/** RFC 6902 JSON patch. Malformed operations → 400; operations that fail to apply → 422. */
export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops))
    throw new PatchError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  if (ops.length > 10000)
    throw new PatchError(400, "The allowed maximum operations in a JSON patch is 10000");
  let out = clone(doc);
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== "string") throw new PatchError(400, "Unexpected kind: unknown");
    const path = op.path;
    if (typeof path !== "string") throw new PatchError(422, `Unexpected kind: ${op.op}`);
    switch (op.op) {
      case "add":
        out = setAt(out, path, requireValue(op), "add");
        break;
      case "replace":
        getAt(out, path, "replace");
        out = setAt(out, path, requireValue(op), "replace");
        break;
      case "remove":
        out = removeAt(out, path);
        break;
      case "move":
      case "copy": {
        if (typeof op.from !== "string") throw new PatchError(422, `${op.op} operation missing from`);
        const v = clone(getAt(out, op.from, op.op));
        if (op.op === "move") out = removeAt(out, op.from);
        out = setAt(out, path, v, "add");
        break;
      }
      case "test": {
        const v = getAt(out, path, "test");
        if (JSON.stringify(canonical(v)) !== JSON.stringify(canonical(requireValue(op)))) {
          throw new PatchError(422, `testing value ${path} failed: test failed`);
        }
        break;
      }
      default:
        throw new PatchError(400, `Unexpected kind: ${op.op}`);
    }
  }
  return out;
}

function requireValue(op: JsonObject): Json {
  if (!("value" in op)) throw new PatchError(422, `missing value`);
  return op.value as Json;
}

function canonical(v: Json): Json {
  if (Array.isArray(v)) return v.map(canonical);
  if (isObject(v)) {
    const o: JsonObject = {};
    for (const k of Object.keys(v).sort()) o[k] = canonical(v[k] as Json);
    return o;
  }
  return v;
}

function tokens(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/"))
    throw new PatchError(422, `add operation does not apply: doc is missing path: "${path}"`);
  return path
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function getAt(doc: Json, path: string, opName: string): Json {
  let node: Json = doc;
  for (const t of tokens(path)) {
    if (Array.isArray(node)) {
      const i = Number(t);
      if (!/^\d+$/.test(t) || i >= node.length) {
        throw new PatchError(
          422,
          `${opName} operation does not apply: doc is missing path: "${path}": missing value`,
        );
      }
      node = node[i] as Json;
    } else if (isObject(node) && t in node) {
      node = node[t] as Json;
    } else {
      throw new PatchError(
        422,
        `${opName} operation does not apply: doc is missing path: "${path}": missing value`,
      );
    }
  }
  return node;
}

function parentOf(doc: Json, path: string, opName: string): { parent: Json; last: string } {
  const ts = tokens(path);
  const last = ts.pop();
  if (last === undefined) return { parent: null, last: "" };
  const parentPath =
    ts.length === 0 ? "" : `/${ts.map((t) => t.replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`;
  return { parent: getAt(doc, parentPath, opName), last };
}

function setAt(doc: Json, path: string, value: Json, opName: "add" | "replace"): Json {
  if (path === "") return clone(value);
  const { parent, last } = parentOf(doc, path, opName);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!/^(\d+|-)$/.test(last) || i > parent.length || (opName === "replace" && i >= parent.length)) {
      throw new PatchError(
        422,
        `${opName} operation does not apply: doc is missing path: "${path}": missing value`,
      );
    }
    if (opName === "add") parent.splice(i, 0, clone(value));
    else parent[i] = clone(value);
  } else if (isObject(parent)) {
    parent[last] = clone(value);
  } else {
    throw new PatchError(
      422,
      `${opName} operation does not apply: doc is missing path: "${path}": missing value`,
    );
  }
  return doc;
}

function removeAt(doc: Json, path: string): Json {
  const { parent, last } = parentOf(doc, path, "remove");
  if (Array.isArray(parent) && /^\d+$/.test(last) && Number(last) < parent.length) {
    parent.splice(Number(last), 1);
  } else if (isObject(parent) && last in parent) {
    delete parent[last];
  } else {
    throw new PatchError(
      422,
      `remove operation does not apply: doc is missing path: "${path}": missing value`,
    );
  }
  return doc;
}
