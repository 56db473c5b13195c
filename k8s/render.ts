// A renderer for the subset of kustomize that k8s/ uses, so tests (and CI machines without
// kubectl) can build every overlay offline. test/unit/k8s-render.test.ts compares its output with
// `kubectl kustomize` object by object whenever kubectl is present.
//
// Supported, with kustomize's semantics: resources (files and kustomization directories),
// components, configMapGenerator (files, literals, namespace, behavior create|merge) with the
// content-hash name suffix and the rename of references to it, labels (pairs, metadata only),
// patches (inline JSON6902 with a kind/name target), replicas, images (newName/newTag/digest).
// Anything else in a kustomization is refused, so the renderer cannot silently drift.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";

export type KObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
};

interface Generator {
  name: string;
  namespace?: string;
  behavior?: "create" | "merge";
  files?: string[];
  literals?: string[];
}
interface Kustomization {
  kind?: string;
  resources?: string[];
  components?: string[];
  configMapGenerator?: Generator[];
  labels?: Array<{ pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }>;
  patches?: Array<{ target: { kind: string; name: string; namespace?: string }; patch: string }>;
  replicas?: Array<{ name: string; count: number }>;
  images?: Array<{ name: string; newName?: string; newTag?: string; digest?: string }>;
}
const KNOWN = new Set([
  "apiVersion",
  "kind",
  "resources",
  "components",
  "configMapGenerator",
  "labels",
  "patches",
  "replicas",
  "images",
]);

/** Generated ConfigMaps get a hash suffix once everything is merged; they are marked until then. */
const generated = new WeakSet<KObject>();

const idOf = (o: KObject) => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;

function readKustomization(dir: string): Kustomization {
  const file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
    .map((f) => join(dir, f))
    .find((f) => existsSync(f));
  if (!file) throw new Error(`no kustomization in ${dir}`);
  const k = parseYaml(readFileSync(file, "utf8")) as Kustomization & Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!KNOWN.has(key)) throw new Error(`${file}: "${key}" is not supported by k8s/render.ts`);
  }
  return k;
}

function readResourceFile(path: string): KObject[] {
  return parseAllDocuments(readFileSync(path, "utf8"))
    .map((d) => d.toJS() as KObject | null)
    .filter((o): o is KObject => o !== null);
}

/** kustomize's recursion: resources, then components, then this level's generators and transformers. */
function accumulate(dir: string, into: KObject[], asComponent: boolean): KObject[] {
  const k = readKustomization(dir);
  if (asComponent !== (k.kind === "Component")) {
    throw new Error(
      `${dir}: ${asComponent ? "a component must be" : "resources must not be"} kind Component`,
    );
  }
  let objs = into;
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r);
    const found = statSync(p).isDirectory() ? accumulate(p, [], false) : readResourceFile(p);
    for (const o of found) {
      if (objs.some((x) => idOf(x) === idOf(o))) throw new Error(`duplicate resource ${idOf(o)}`);
      objs.push(o);
    }
  }
  for (const c of k.components ?? []) objs = accumulate(resolve(dir, c), objs, true);
  for (const g of k.configMapGenerator ?? []) generate(dir, g, objs);
  for (const p of k.patches ?? []) {
    const targets = objs.filter(
      (o) =>
        o.kind === p.target.kind &&
        o.metadata.name === p.target.name &&
        (p.target.namespace === undefined || o.metadata.namespace === p.target.namespace),
    );
    if (targets.length === 0) throw new Error(`patch target ${p.target.kind}/${p.target.name} not found`);
    for (const t of targets) applyJsonPatch(t, parseYaml(p.patch) as JsonOp[]);
  }
  for (const l of k.labels ?? []) {
    if (l.includeSelectors || l.includeTemplates)
      throw new Error("labels: only metadata labels are supported");
    for (const o of objs) o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
  }
  for (const r of k.replicas ?? []) {
    const d = objs.find((o) => o.metadata.name === r.name && /^(Deployment|StatefulSet)$/.test(o.kind));
    if (!d) throw new Error(`replicas: ${r.name} not found`);
    (d.spec as Record<string, unknown>).replicas = r.count;
  }
  for (const img of k.images ?? []) for (const o of objs) setImages(o, img);
  return objs;
}

function generate(dir: string, g: Generator, objs: KObject[]): void {
  const data: Record<string, string> = {};
  for (const f of g.files ?? []) data[basename(f)] = readFileSync(resolve(dir, f), "utf8");
  for (const l of g.literals ?? []) {
    const at = l.indexOf("=");
    if (at <= 0) throw new Error(`configMapGenerator ${g.name}: bad literal ${l}`);
    data[l.slice(0, at)] = l.slice(at + 1);
  }
  const existing = objs.find(
    (o) => o.kind === "ConfigMap" && o.metadata.name === g.name && o.metadata.namespace === g.namespace,
  );
  if ((g.behavior ?? "create") === "merge") {
    if (!existing) throw new Error(`configMapGenerator ${g.name}: nothing to merge into`);
    existing.data = { ...(existing.data as Record<string, string>), ...data };
    return;
  }
  if (existing) throw new Error(`configMapGenerator ${g.name}: already exists`);
  const metadata: KObject["metadata"] = { name: g.name };
  if (g.namespace) metadata.namespace = g.namespace;
  const cm: KObject = { apiVersion: "v1", kind: "ConfigMap", metadata, data };
  generated.add(cm);
  objs.push(cm);
}

type JsonOp = { op: "add" | "replace" | "remove"; path: string; value?: unknown };

function applyJsonPatch(target: KObject, ops: JsonOp[]): void {
  for (const op of ops) {
    const parts = op.path
      .split("/")
      .slice(1)
      .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
    const last = parts.pop();
    if (last === undefined) throw new Error(`bad patch path ${op.path}`);
    let at: unknown = target;
    for (const p of parts) {
      at = (at as Record<string, unknown>)[p];
      if (typeof at !== "object" || at === null) throw new Error(`patch path ${op.path} not found`);
    }
    if (Array.isArray(at)) {
      const i = last === "-" ? at.length : Number(last);
      if (op.op === "add") at.splice(i, 0, op.value);
      else if (i >= at.length) throw new Error(`patch path ${op.path} not found`);
      else if (op.op === "replace") at[i] = op.value;
      else at.splice(i, 1);
      continue;
    }
    const parent = at as Record<string, unknown>;
    if (op.op === "add") parent[last] = op.value;
    else if (!(last in parent)) throw new Error(`patch path ${op.path} not found`);
    else if (op.op === "replace") parent[last] = op.value;
    else delete parent[last];
  }
}

type Container = { image?: string };
function podSpecOf(o: KObject): Record<string, Container[] | undefined> | undefined {
  const spec = o.spec as Record<string, unknown> | undefined;
  if (o.kind === "Pod") return spec as Record<string, Container[]>;
  const tpl = spec?.template as { spec?: Record<string, Container[]> } | undefined;
  return tpl?.spec;
}

function setImages(o: KObject, img: NonNullable<Kustomization["images"]>[number]): void {
  const spec = podSpecOf(o);
  for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]) {
    if (!c.image) continue;
    const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image);
    if (m?.[1] !== img.name) continue;
    const name = img.newName ?? img.name;
    if (img.digest) c.image = `${name}@${img.digest}`;
    else if (img.newTag) c.image = `${name}:${img.newTag}`;
    else c.image = `${name}${m[2] ? `:${m[2]}` : ""}${m[3] ? `@${m[3]}` : ""}`;
  }
}

/** Go's encoding/json string form (it escapes <, >, & and U+2028/9 where JSON.stringify does not). */
function goJson(v: unknown): string {
  if (typeof v === "string") {
    return JSON.stringify(v).replace(
      /[<>&\u2028\u2029\b\f]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
  }
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, x]) => `${goJson(k)}:${goJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/**
 * kustomize's ConfigMap name suffix: sha256 of Go-JSON {data, kind, name}, where kustomize (5.x,
 * kyaml hasher) leaves `name` empty; the first 10 hex digits with 0,1,3,a,e swapped for letters.
 */
export function configMapHash(data: Record<string, string>): string {
  const hex = createHash("sha256")
    .update(goJson({ kind: "ConfigMap", name: "", data }))
    .digest("hex");
  const swap: Record<string, string> = { "0": "g", "1": "h", "3": "k", a: "m", e: "t" };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join("");
}

type PodSpecRefs = {
  volumes?: Array<{ configMap?: { name?: string } }>;
  containers?: Array<{
    envFrom?: Array<{ configMapRef?: { name?: string } }>;
    env?: Array<{ valueFrom?: { configMapKeyRef?: { name?: string } } }>;
  }>;
};

function renameConfigMapRefs(o: KObject, namespace: string | undefined, from: string, to: string): void {
  if (o.metadata.namespace !== namespace) return;
  const spec = podSpecOf(o) as PodSpecRefs | undefined;
  const fix = (ref: { name?: string } | undefined) => {
    if (ref?.name === from) ref.name = to;
  };
  for (const v of spec?.volumes ?? []) fix(v.configMap);
  for (const c of spec?.containers ?? []) {
    for (const e of c.envFrom ?? []) fix(e.configMapRef);
    for (const e of c.env ?? []) fix(e.valueFrom?.configMapKeyRef);
  }
}

/** Renders the kustomization in `dir` (an overlay or the base) to plain objects. */
export function renderKustomization(dir: string): KObject[] {
  const objs = accumulate(resolve(dir), [], false);
  for (const cm of objs.filter((o) => generated.has(o))) {
    const old = cm.metadata.name;
    cm.metadata.name = `${old}-${configMapHash(cm.data as Record<string, string>)}`;
    for (const o of objs) renameConfigMapRefs(o, cm.metadata.namespace, old, cm.metadata.name);
  }
  return objs;
}

export const K8S_DIR = dirname(new URL(import.meta.url).pathname);
export const OVERLAYS = ["dev", "production", "gvisor", "api-exec", "pydantic-http"] as const;
export const overlayDir = (name: string) => join(K8S_DIR, "overlays", name);

// `npx tsx k8s/render.ts k8s/overlays/dev | kubectl apply -f -` where kustomize is not at hand.
if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write("usage: npx tsx k8s/render.ts <kustomization dir>\n");
    process.exit(2);
  }
  const { stringify } = await import("yaml");
  process.stdout.write(
    renderKustomization(dir)
      .map((o) => stringify(o))
      .join("---\n"),
  );
}
