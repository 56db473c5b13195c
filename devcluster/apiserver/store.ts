import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { clone, isObject, type JsonObject } from "./types.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreEvent {
  type: EventType;
  rv: number;
  /** `<group>/<resource>`, e.g. `/pods`, `coordination.k8s.io/leases`. */
  resource: string;
  object: JsonObject;
  /** The object before this change (MODIFIED/DELETED): watches with selectors need it. */
  prev: JsonObject | undefined;
}

interface Snapshot {
  rv: number;
  objects: Record<string, Record<string, JsonObject>>;
}

/**
 * All objects, one global monotonically increasing resourceVersion (like etcd's revision), and a
 * bounded history of changes that watches resume from.
 */
export class Store {
  private rv: number;
  private readonly objects = new Map<string, Map<string, JsonObject>>();
  private readonly history: StoreEvent[] = [];
  /** Highest resourceVersion no longer in history: resuming from below it is 410 Expired. */
  private compacted: number;
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(
    private readonly historySize: number,
    private readonly stateFile?: string,
  ) {
    this.rv = 100;
    if (stateFile !== undefined) this.load(stateFile);
    this.compacted = this.rv;
  }

  currentRV(): number {
    return this.rv;
  }

  /** Lowest resourceVersion a watch may resume from. */
  oldestResumable(): number {
    return this.compacted;
  }

  get(resource: string, key: string): JsonObject | undefined {
    const o = this.objects.get(resource)?.get(key);
    return o === undefined ? undefined : clone(o);
  }

  /** Objects sorted by key (namespace/name), as etcd lists them. */
  list(resource: string, namespace?: string): JsonObject[] {
    const m = this.objects.get(resource);
    if (!m) return [];
    const keys = [...m.keys()].sort();
    const out: JsonObject[] = [];
    for (const k of keys) {
      if (namespace !== undefined && !k.startsWith(`${namespace}/`)) continue;
      const o = m.get(k);
      if (o) out.push(clone(o));
    }
    return out;
  }

  /** Writes `obj` (create or update) with a fresh resourceVersion; returns the stored copy. */
  put(resource: string, key: string, obj: JsonObject): JsonObject {
    const m = this.objects.get(resource) ?? new Map<string, JsonObject>();
    this.objects.set(resource, m);
    const prev = m.get(key);
    this.rv++;
    const stored = clone(obj);
    setRV(stored, this.rv);
    m.set(key, stored);
    this.emit({ type: prev ? "MODIFIED" : "ADDED", rv: this.rv, resource, object: stored, prev });
    return clone(stored);
  }

  remove(resource: string, key: string): JsonObject | undefined {
    const m = this.objects.get(resource);
    const prev = m?.get(key);
    if (!m || !prev) return undefined;
    m.delete(key);
    this.rv++;
    const gone = clone(prev);
    setRV(gone, this.rv);
    this.emit({ type: "DELETED", rv: this.rv, resource, object: gone, prev });
    return clone(gone);
  }

  /** Events with rv > from, in order; undefined if `from` is older than the history window. */
  since(from: number): StoreEvent[] | undefined {
    if (from < this.compacted) return undefined;
    return this.history.filter((e) => e.rv > from);
  }

  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: StoreEvent): void {
    this.history.push(e);
    while (this.history.length > this.historySize) {
      const old = this.history.shift();
      if (old) this.compacted = old.rv;
    }
    if (this.stateFile !== undefined) this.save(this.stateFile);
    for (const fn of this.listeners) fn(e);
  }

  private save(file: string): void {
    const snap: Snapshot = { rv: this.rv, objects: {} };
    for (const [res, m] of this.objects) snap.objects[res] = Object.fromEntries(m);
    writeFileSync(`${file}.tmp`, JSON.stringify(snap));
    renameSync(`${file}.tmp`, file);
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      return;
    }
    const snap = JSON.parse(text) as Snapshot;
    this.rv = snap.rv;
    for (const [res, objs] of Object.entries(snap.objects)) {
      this.objects.set(res, new Map(Object.entries(objs)));
    }
  }
}

function setRV(obj: JsonObject, rv: number): void {
  if (!isObject(obj.metadata)) obj.metadata = {};
  (obj.metadata as JsonObject).resourceVersion = String(rv);
}
