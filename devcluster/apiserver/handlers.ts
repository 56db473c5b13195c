import { applyConfig } from "./apply.ts";
import { type Decoded, decodeBody, decodeObject, fieldValidationOf, parseJson } from "./body.ts";
import { namespaceKind } from "./kinds/index.ts";
import { deepEqual, groupVersion, type Kind, resourceId } from "./kinds/kind.ts";
import {
  generateName,
  getOr404,
  keyOf,
  labelsOf,
  metaOf,
  newUid,
  rvOf,
  target,
  withoutType,
  withType,
} from "./objects.ts";
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from "./patch.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import {
  alreadyExists,
  badRequest,
  type Cause,
  conflict,
  internal,
  invalid,
  MODIFIED_MESSAGE,
  notFound,
  StatusError,
  unsupportedMediaType,
} from "./status.ts";
import type { Store } from "./store.ts";
import { DecodeError, nowTime, timeAfterSeconds } from "./time.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";
import { field, validateObjectMeta } from "./validation.ts";

export interface Ctx {
  store: Store;
  kind: Kind;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  query: URLSearchParams;
  body: Buffer;
  contentType: string;
}

export interface Reply {
  code: number;
  body: JsonObject;
  warnings?: string[];
}

function isDryRun(q: URLSearchParams): boolean {
  const v = q.getAll("dryRun");
  for (const d of v)
    if (d !== "All") throw badRequest(`dryRun: Unsupported value: "${d}": supported values: "All"`);
  return v.length > 0;
}

/** Object selection for list/watch/deletecollection. */
export function matcher(kind: Kind, q: URLSearchParams): (obj: JsonObject) => boolean {
  const ls = q.get("labelSelector");
  const fs = q.get("fieldSelector");
  const labelSel = ls ? parseLabelSelector(ls) : undefined;
  const fieldSel = fs ? parseFieldSelector(fs, kind.fieldLabels) : undefined;
  return (obj) => (!labelSel || labelSel(labelsOf(obj))) && (!fieldSel || fieldSel(kind.fields(obj)));
}

function requireNamespace(ctx: Ctx): void {
  if (!ctx.kind.namespaced || ctx.namespace === undefined) return;
  if (!ctx.store.get(resourceId(namespaceKind), keyOf(undefined, ctx.namespace))) {
    throw notFound({ name: ctx.namespace, group: "", kind: "namespaces" });
  }
}

function checkNamespace(ctx: Ctx, meta: JsonObject): void {
  if (!ctx.kind.namespaced) {
    delete meta.namespace;
    return;
  }
  const ns = meta.namespace;
  if (typeof ns === "string" && ns !== "" && ns !== ctx.namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  meta.namespace = ctx.namespace ?? "";
}

function invalidFor(kind: Kind, name: string, causes: Cause[]): StatusError {
  return invalid(kind.kind, kind.group, name, causes);
}

export function get(ctx: Ctx): Reply {
  return {
    code: 200,
    body: withType(ctx.kind, getOr404(ctx.store, ctx.kind, ctx.namespace, ctx.name ?? "")),
  };
}

interface Continue {
  rv: string;
  start: string;
}

export function list(ctx: Ctx): Reply {
  const { kind, store, query } = ctx;
  const match = matcher(kind, query);
  const rvParam = query.get("resourceVersion");
  if (rvParam && !/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version "${rvParam}"`);
  const limitRaw = query.get("limit");
  const limit = limitRaw ? Number(limitRaw) : 0;
  if (limitRaw && (!Number.isInteger(limit) || limit < 0))
    throw badRequest(`limit: Invalid value: "${limitRaw}"`);
  let listRV = String(store.currentRV());
  let after = "";
  const cont = query.get("continue");
  if (cont) {
    try {
      const c = JSON.parse(Buffer.from(cont, "base64").toString("utf8")) as Continue;
      if (typeof c.rv !== "string" || typeof c.start !== "string") throw new Error("bad");
      listRV = c.rv;
      after = c.start;
    } catch {
      throw badRequest(
        "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
      );
    }
  }
  const ns = kind.namespaced ? ctx.namespace : undefined;
  const all = store.list(resourceId(kind), ns).filter(match);
  const keyed = all.map((o) => ({
    key: keyOf(metaOf(o).namespace as string | undefined, String(metaOf(o).name)),
    o,
  }));
  const rest = after === "" ? keyed : keyed.filter((k) => k.key > after);
  const page = limit > 0 ? rest.slice(0, limit) : rest;
  const metadata: JsonObject = { resourceVersion: listRV };
  if (limit > 0 && rest.length > limit) {
    const last = page[page.length - 1];
    metadata.continue = Buffer.from(JSON.stringify({ rv: listRV, start: last?.key ?? "" })).toString(
      "base64",
    );
    metadata.remainingItemCount = rest.length - limit;
  }
  return {
    code: 200,
    body: {
      kind: kind.listKind,
      apiVersion: groupVersion(kind),
      metadata,
      items: page.map((k) => withoutType(k.o)),
    },
  };
}

export function create(ctx: Ctx, managedFields?: JsonObject[]): Reply {
  const { kind, store } = ctx;
  const { obj, warnings } = decodeBody(kind, ctx.body, fieldValidationOf(ctx.query));
  const dryRun = isDryRun(ctx.query);
  const meta = metaOf(obj);
  checkNamespace(ctx, meta);
  const presetRV = rvOf(obj);
  for (const f of [
    "uid",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "generation",
  ]) {
    delete meta[f];
  }
  meta.creationTimestamp = nowTime();
  meta.uid = newUid();
  if (kind.specChanged) meta.generation = 1;
  const wantsGenerated =
    (typeof meta.name !== "string" || meta.name === "") &&
    typeof meta.generateName === "string" &&
    meta.generateName !== "";
  if (wantsGenerated) meta.name = generateName(meta.generateName as string);
  try {
    kind.prepareForCreate(obj);
  } catch (e) {
    if (e instanceof DecodeError)
      throw badRequest(
        `${kind.kind} in version "${kind.version}" cannot be handled as a ${kind.kind}: ${e.message}`,
      );
    throw e;
  }
  const errs = [...validateObjectMeta(meta, kind.nameRule, kind.namespaced), ...kind.validate(obj)];
  if (errs.length > 0) throw invalidFor(kind, typeof meta.name === "string" ? meta.name : "", errs);
  requireNamespace(ctx);
  if (presetRV !== undefined) throw internal("resourceVersion should not be set on objects to be created");
  const res = resourceId(kind);
  let name = meta.name as string;
  while (wantsGenerated && store.get(res, keyOf(ctx.namespace, name))) {
    name = generateName(meta.generateName as string);
    meta.name = name;
  }
  if (store.get(res, keyOf(kind.namespaced ? ctx.namespace : undefined, name)))
    throw alreadyExists(target(kind, name));
  delete meta.resourceVersion;
  if (managedFields) meta.managedFields = managedFields;
  const stored = dryRun
    ? obj
    : store.put(res, keyOf(kind.namespaced ? ctx.namespace : undefined, name), withoutType(obj));
  return { code: 201, body: withType(kind, stored), warnings };
}

/** The shared tail of PUT and PATCH: strategy, validation, optimistic concurrency, write. */
function commitUpdate(
  ctx: Ctx,
  obj: JsonObject,
  old: JsonObject,
  dryRun: boolean,
  warnings: string[],
  managedFields?: JsonObject[],
): Reply {
  const { kind, store } = ctx;
  const name = ctx.name ?? "";
  const meta = metaOf(obj);
  const oldMeta = metaOf(old);
  const status = ctx.subresource === "status";
  if (status && kind.prepareForStatusUpdate) kind.prepareForStatusUpdate(obj, old);
  else {
    try {
      kind.prepareForUpdate(obj, old);
    } catch (e) {
      if (e instanceof DecodeError)
        throw badRequest(
          `${kind.kind} in version "${kind.version}" cannot be handled as a ${kind.kind}: ${e.message}`,
        );
      throw e;
    }
  }
  // rest.BeforeUpdate: server-owned metadata cannot be changed by an update.
  if (oldMeta.generation === undefined) delete meta.generation;
  else meta.generation = oldMeta.generation;
  if (meta.uid === undefined || meta.uid === "") meta.uid = oldMeta.uid ?? null;
  meta.creationTimestamp = oldMeta.creationTimestamp ?? null;
  if (oldMeta.deletionTimestamp !== undefined) meta.deletionTimestamp = oldMeta.deletionTimestamp;
  else delete meta.deletionTimestamp;
  if (oldMeta.deletionGracePeriodSeconds !== undefined && meta.deletionGracePeriodSeconds === undefined) {
    meta.deletionGracePeriodSeconds = oldMeta.deletionGracePeriodSeconds;
  }
  // Only server-side apply writes managedFields; any other write keeps what appliers own.
  if (managedFields) meta.managedFields = managedFields;
  else if (oldMeta.managedFields !== undefined) meta.managedFields = oldMeta.managedFields;
  else delete meta.managedFields;
  delete meta.selfLink;
  const errs: Cause[] = [];
  if (meta.uid !== oldMeta.uid) errs.push(field.immutable("metadata.uid", meta.uid));
  if (meta.name !== oldMeta.name) errs.push(field.immutable("metadata.name", meta.name));
  errs.push(...validateObjectMeta(meta, kind.nameRule, kind.namespaced));
  if (status && kind.validateStatusUpdate) errs.push(...kind.validateStatusUpdate(obj, old));
  else if (!status) errs.push(...kind.validateUpdate(obj, old));
  if (errs.length > 0) throw invalidFor(kind, name, errs);
  if (!status && kind.specChanged?.(obj, old))
    meta.generation = (typeof oldMeta.generation === "number" ? oldMeta.generation : 0) + 1;
  meta.resourceVersion = oldMeta.resourceVersion ?? null;
  // An update that changes nothing is not written: same resourceVersion, no watch event.
  if (deepEqual(withoutType(obj), withoutType(old)))
    return { code: 200, body: withType(kind, old), warnings };
  const key = keyOf(kind.namespaced ? ctx.namespace : undefined, name);
  const finalizersLeft = Array.isArray(meta.finalizers) && meta.finalizers.length > 0;
  const hadFinalizers = Array.isArray(oldMeta.finalizers) && oldMeta.finalizers.length > 0;
  if (dryRun) return { code: 200, body: withType(kind, obj), warnings };
  if (
    !finalizersLeft &&
    hadFinalizers &&
    oldMeta.deletionTimestamp !== undefined &&
    (oldMeta.deletionGracePeriodSeconds ?? 0) === 0
  ) {
    store.put(resourceId(kind), key, withoutType(obj));
    const gone = store.remove(resourceId(kind), key) ?? obj;
    return { code: 200, body: withType(kind, gone), warnings };
  }
  return { code: 200, body: withType(kind, store.put(resourceId(kind), key, withoutType(obj))), warnings };
}

function checkRV(ctx: Ctx, newRV: string | undefined, old: JsonObject): void {
  const oldRV = rvOf(old);
  if (newRV === undefined) return;
  if (!/^\d+$/.test(newRV))
    throw badRequest(`invalid resource version: strconv.ParseUint: parsing "${newRV}": invalid syntax`);
  if (newRV !== oldRV) throw conflict(target(ctx.kind, ctx.name ?? ""), MODIFIED_MESSAGE);
}

export function update(ctx: Ctx): Reply {
  const { kind } = ctx;
  const name = ctx.name ?? "";
  const { obj, warnings } = decodeBody(kind, ctx.body, fieldValidationOf(ctx.query));
  const dryRun = isDryRun(ctx.query);
  const meta = metaOf(obj);
  checkNamespace(ctx, meta);
  if (typeof meta.name === "string" && meta.name !== "" && meta.name !== name) {
    throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
  }
  meta.name = name;
  const old = getOr404(ctx.store, kind, ctx.namespace, name);
  const newRV = rvOf(obj);
  if (newRV === undefined && !kind.allowUnconditionalUpdate) {
    // The real server names the resource (not the kind) here and prints the uint64 zero as 0x0.
    throw invalid(kind.resource, kind.group, name, [
      {
        reason: "FieldValueInvalid",
        message: "Invalid value: 0x0: must be specified for an update",
        field: "metadata.resourceVersion",
      },
    ]);
  }
  checkRV(ctx, newRV, old);
  return commitUpdate(ctx, obj, old, dryRun, warnings);
}

const PATCH_TYPES = [
  "application/json-patch+json",
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
  "application/apply-patch+yaml",
];

export function patch(ctx: Ctx): Reply {
  const { kind } = ctx;
  const name = ctx.name ?? "";
  const type = ctx.contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (!PATCH_TYPES.includes(type)) throw unsupportedMediaType(PATCH_TYPES);
  if (type === "application/apply-patch+yaml") return serverSideApply(ctx);
  const dryRun = isDryRun(ctx.query);
  const validation = fieldValidationOf(ctx.query);
  const old = getOr404(ctx.store, kind, ctx.namespace, name);
  const parsed = parseJson(ctx.body);
  if (!parsed.ok) throw badRequest(`error decoding patch: ${parsed.message}`);
  let patched: Json;
  try {
    const current = withType(kind, old);
    if (type === "application/json-patch+json") patched = jsonPatch(current, parsed.value);
    else if (!isObject(parsed.value)) throw new PatchError(400, "invalid JSON document");
    else if (type === "application/merge-patch+json") patched = mergePatch(current, parsed.value);
    else patched = strategicMergePatch(current, parsed.value);
  } catch (e) {
    if (!(e instanceof PatchError)) throw e;
    if (e.code === 400) throw badRequest(e.message);
    throw new StatusError(422, "Invalid", e.message);
  }
  let decoded: Decoded;
  try {
    decoded = decodeObject(kind, patched, validation);
  } catch (e) {
    if (!(e instanceof StatusError) || e.code !== 400) throw e;
    // A patch that yields an undecodable object (e.g. a MicroTime with 3 digits) is reported as
    // an invalid "patch" field with an empty kind, as the real patch handler does.
    const inner = e.message.replace(/^.* cannot be handled as a \w+: /, "");
    throw invalid("", "", "", [field.invalid("patch", JSON.stringify(patched), inner)]);
  }
  const obj = decoded.obj;
  const meta = metaOf(obj);
  if (kind.namespaced && meta.namespace !== ctx.namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  if (meta.name !== name) {
    throw badRequest(
      `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`,
    );
  }
  checkRV(ctx, rvOf(obj), old);
  return commitUpdate(ctx, obj, old, dryRun, decoded.warnings);
}

interface DeleteOptions {
  gracePeriodSeconds?: number;
  uid?: string;
  resourceVersion?: string;
  dryRun: boolean;
}

function deleteOptions(ctx: Ctx): DeleteOptions {
  const opts: DeleteOptions = { dryRun: isDryRun(ctx.query) };
  const g = ctx.query.get("gracePeriodSeconds");
  if (g !== null) {
    if (!/^-?\d+$/.test(g)) throw badRequest(`strconv.ParseInt: parsing "${g}": invalid syntax`);
    opts.gracePeriodSeconds = Number(g);
  }
  if (ctx.body.length > 0) {
    const p = parseJson(ctx.body);
    if (!p.ok || !isObject(p.value)) {
      throw badRequest(
        `couldn't get version/kind; json parse error: ${p.ok ? "expected an object" : p.message}`,
      );
    }
    const b = p.value;
    if (b.kind !== undefined && b.kind !== "DeleteOptions") {
      throw badRequest(`${String(b.kind)} in version "v1" cannot be handled as a DeleteOptions`);
    }
    if (typeof b.gracePeriodSeconds === "number") opts.gracePeriodSeconds = b.gracePeriodSeconds;
    if (isObject(b.preconditions)) {
      if (typeof b.preconditions.uid === "string") opts.uid = b.preconditions.uid;
      if (typeof b.preconditions.resourceVersion === "string")
        opts.resourceVersion = b.preconditions.resourceVersion;
    }
    if (Array.isArray(b.dryRun) && b.dryRun.includes("All")) opts.dryRun = true;
  }
  return opts;
}

/** Deletes one object with the registry's graceful/finalizer semantics; returns the reply body. */
function deleteOne(ctx: Ctx, obj: JsonObject, opts: DeleteOptions): { body: JsonObject; removed: boolean } {
  const { kind, store } = ctx;
  const meta = metaOf(obj);
  const name = String(meta.name);
  const key = keyOf(kind.namespaced ? (meta.namespace as string) : undefined, name);
  const t = target(kind, name);
  if (opts.uid !== undefined && opts.uid !== meta.uid) {
    throw conflict(
      t,
      `Precondition failed: UID in precondition: ${opts.uid}, UID in object meta: ${String(meta.uid)}`,
    );
  }
  if (opts.resourceVersion !== undefined && opts.resourceVersion !== meta.resourceVersion) {
    throw conflict(
      t,
      `Precondition failed: ResourceVersion in precondition: ${opts.resourceVersion}, ResourceVersion in object meta: ${String(meta.resourceVersion)}`,
    );
  }
  const res = resourceId(kind);
  const period = kind.gracePeriod ? kind.gracePeriod(obj, opts.gracePeriodSeconds) : 0;
  const hasFinalizers = Array.isArray(meta.finalizers) && meta.finalizers.length > 0;
  const pending = typeof meta.deletionTimestamp === "string";
  const current =
    typeof meta.deletionGracePeriodSeconds === "number" ? meta.deletionGracePeriodSeconds : undefined;
  const unchanged = { body: withType(kind, obj), removed: false };
  if (period > 0) {
    // A graceful delete may only shorten a pending grace period.
    if (pending && current !== undefined && period >= current) return unchanged;
    meta.deletionTimestamp = timeAfterSeconds(period);
    meta.deletionGracePeriodSeconds = period;
    if (opts.dryRun) return unchanged;
    return { body: withType(kind, store.put(res, key, withoutType(obj))), removed: false };
  }
  if (hasFinalizers) {
    // Finalizers hold the object until whoever owns them removes them with an update.
    if (pending && current === 0) return unchanged;
    if (!pending) meta.deletionTimestamp = nowTime();
    meta.deletionGracePeriodSeconds = 0;
    if (opts.dryRun) return unchanged;
    return { body: withType(kind, store.put(res, key, withoutType(obj))), removed: false };
  }
  if (opts.dryRun) return { body: withType(kind, obj), removed: true };
  const gone = store.remove(res, key) ?? obj;
  if (kind.returnDeletedObject) return { body: withType(kind, gone), removed: true };
  const details: JsonObject = { name };
  if (kind.group !== "") details.group = kind.group;
  details.kind = kind.resource;
  details.uid = metaOf(gone).uid ?? null;
  return {
    body: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details },
    removed: true,
  };
}

export function remove(ctx: Ctx): Reply {
  const obj = getOr404(ctx.store, ctx.kind, ctx.namespace, ctx.name ?? "");
  const opts = deleteOptions(ctx);
  return { code: 200, body: deleteOne(ctx, obj, opts).body };
}

export function removeCollection(ctx: Ctx): Reply {
  const opts = deleteOptions(ctx);
  const match = matcher(ctx.kind, ctx.query);
  const ns = ctx.kind.namespaced ? ctx.namespace : undefined;
  const items: JsonObject[] = [];
  for (const o of ctx.store.list(resourceId(ctx.kind), ns).filter(match)) {
    const { body } = deleteOne(ctx, o, { ...opts, uid: undefined, resourceVersion: undefined });
    items.push(withoutType(body.kind === "Status" ? o : body));
  }
  return {
    code: 200,
    body: {
      kind: ctx.kind.listKind,
      apiVersion: groupVersion(ctx.kind),
      metadata: { resourceVersion: String(ctx.store.currentRV()) },
      items,
    },
  };
}

/** POST pods/NAME/binding: what the scheduler (here: the kubelet) uses to assign a node. */
export function bind(ctx: Ctx): Reply {
  const name = ctx.name ?? "";
  const parsed = parseJson(ctx.body);
  if (!parsed.ok || !isObject(parsed.value)) {
    throw badRequest(
      `the object provided is unrecognized (must be of type Binding): couldn't get version/kind; json parse error: ${parsed.ok ? "expected an object" : parsed.message}`,
    );
  }
  const b = parsed.value;
  if (b.kind !== undefined && b.kind !== "Binding") {
    throw badRequest(
      `${String(b.kind)} in version "v1" cannot be handled as a Binding: no kind "${String(b.kind)}" is registered`,
    );
  }
  const bmeta = isObject(b.metadata) ? b.metadata : {};
  if (bmeta.name !== name) throw badRequest("name in URL does not match name in Binding object");
  if (typeof bmeta.namespace === "string" && bmeta.namespace !== "" && bmeta.namespace !== ctx.namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  const tgt = isObject(b.target) ? b.target : {};
  const nodeName = tgt.name;
  if (typeof nodeName !== "string" || nodeName === "") {
    throw invalid("Binding", "", name, [field.required("target.name", "")]);
  }
  if (tgt.kind !== undefined && tgt.kind !== "" && tgt.kind !== "Node") {
    throw invalid("Binding", "", name, [
      field.notSupported("target.kind", tgt.kind ?? null, ["Node", "<empty>"]),
    ]);
  }
  const pod = getOr404(ctx.store, ctx.kind, ctx.namespace, name);
  const meta = metaOf(pod);
  const bindTarget = { name, group: "", kind: "pods/binding" };
  if (typeof meta.deletionTimestamp === "string") {
    throw conflict(bindTarget, `pod ${name} is being deleted, cannot be assigned to a host`);
  }
  const spec = (pod.spec ?? {}) as JsonObject;
  if (typeof spec.nodeName === "string" && spec.nodeName !== "") {
    throw conflict(bindTarget, `pod ${name} is already assigned to node "${spec.nodeName}"`);
  }
  spec.nodeName = nodeName;
  pod.spec = spec;
  const status = isObject(pod.status) ? pod.status : {};
  const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isObject) : [];
  const scheduled = conditions.find((c) => c.type === "PodScheduled");
  if (scheduled) {
    // The binding replaces the condition: an earlier Unschedulable reason and message go.
    if (scheduled.status !== "True") scheduled.lastTransitionTime = nowTime();
    scheduled.status = "True";
    delete scheduled.reason;
    delete scheduled.message;
  } else
    conditions.push({
      type: "PodScheduled",
      status: "True",
      lastProbeTime: null,
      lastTransitionTime: nowTime(),
    });
  status.conditions = conditions;
  pod.status = status;
  if (!isDryRun(ctx.query)) ctx.store.put(resourceId(ctx.kind), keyOf(ctx.namespace, name), withoutType(pod));
  return {
    code: 201,
    body: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", code: 201 },
  };
}

/** PATCH application/apply-patch+yaml: creates the object or merges the manager's fields into it (`apply.ts`). */
function serverSideApply(ctx: Ctx): Reply {
  const { kind, store } = ctx;
  const name = ctx.name ?? "";
  const manager = ctx.query.get("fieldManager") ?? "";
  if (manager === "")
    throw invalid("PatchOptions", "meta.k8s.io", "", [
      field.required("fieldManager", "is required for apply patch"),
    ]);
  const force = ctx.query.get("force");
  if (force !== null && force !== "true" && force !== "false")
    throw badRequest(
      `force: Invalid value: "${force}": strconv.ParseBool: parsing "${force}": invalid syntax`,
    );
  const dryRun = isDryRun(ctx.query);
  const parsed = parseJson(ctx.body);
  // YAML is a superset of JSON; devcluster reads the JSON form, which is what kubectl and client-go send.
  if (!parsed.ok)
    throw badRequest(`error decoding YAML: devcluster reads apply patches as JSON: ${parsed.message}`);
  const { obj: cfg, warnings } = decodeObject(kind, parsed.value, fieldValidationOf(ctx.query));
  const meta = metaOf(cfg);
  if (meta.name !== undefined && meta.name !== name)
    throw badRequest(
      `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`,
    );
  meta.name = name;
  checkNamespace(ctx, meta);
  const live = store.get(resourceId(kind), keyOf(kind.namespaced ? ctx.namespace : undefined, name));
  const result = applyConfig(live ? withType(kind, live) : undefined, cfg, {
    manager,
    apiVersion: groupVersion(kind),
    now: nowTime(),
    force: force === "true",
    ownsStatus: ctx.subresource === "status",
  });
  if (!result.ok) {
    const n = result.conflicts.length;
    const lines = result.conflicts.map((c) => `conflict with ${JSON.stringify(c.manager)}: ${c.field}`);
    throw new StatusError(
      409,
      "Conflict",
      `Apply failed with ${n} conflict${n === 1 ? "" : "s"}: ${lines.join("\n")}`,
      {
        causes: result.conflicts.map((c) => ({
          reason: "FieldManagerConflict",
          message: `conflict with ${JSON.stringify(c.manager)}`,
          field: c.field,
        })),
      },
    );
  }
  if (!live) {
    if (ctx.subresource !== undefined) throw notFound(target(kind, name));
    return create({ ...ctx, body: Buffer.from(JSON.stringify(result.obj)) }, result.managedFields);
  }
  checkRV(ctx, rvOf(cfg), live);
  return commitUpdate(ctx, result.obj, live, dryRun, warnings, result.managedFields);
}
