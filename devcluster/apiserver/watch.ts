import type { ServerResponse } from "node:http";
import { type Ctx, matcher } from "./handlers.ts";
import { groupVersion, resourceId } from "./kinds/kind.ts";
import { metaOf, withType } from "./objects.ts";
import { badRequest, expired } from "./status.ts";
import type { StoreEvent } from "./store.ts";
import { includeObjectOf, toTable } from "./table.ts";
import type { JsonObject } from "./types.ts";

export interface WatchOptions {
  bookmarkIntervalMs: number;
  /** Default lifetime of a watch without timeoutSeconds (the real server: 30–60 min). */
  defaultTimeoutMs: number;
  /** `kubectl get -w`: each event's object as a one-row meta.k8s.io Table of this version. */
  table?: "v1" | "v1beta1";
}

/**
 * Serves `?watch=true` as newline-delimited JSON events. Resumes from `resourceVersion` out of the
 * store's history; an expired one gets a single ERROR event (Status 410 Expired), as the real
 * watch cache answers, and the stream ends. Returns a function that ends the watch.
 */
export function serveWatch(ctx: Ctx, res: ServerResponse, opts: WatchOptions, onEnd: () => void): () => void {
  const { kind, store, query } = ctx;
  const match = matcher(kind, query);
  const rvParam = query.get("resourceVersion") ?? "";
  if (rvParam !== "" && !/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version "${rvParam}"`);
  const timeoutRaw = query.get("timeoutSeconds");
  if (timeoutRaw !== null && !/^\d+$/.test(timeoutRaw))
    throw badRequest(`timeoutSeconds: Invalid value: "${timeoutRaw}"`);
  if (opts.table) includeObjectOf(query);
  const res_id = resourceId(kind);
  const ns = kind.namespaced ? ctx.namespace : undefined;
  const inScope = (o: JsonObject) => ns === undefined || metaOf(o).namespace === ns;

  res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private" });
  res.flushHeaders();
  let ended = false;
  const send = (type: string, obj: JsonObject) => {
    const object =
      opts.table && type !== "ERROR" && type !== "BOOKMARK" ? toTable(kind, obj, opts.table, query) : obj;
    if (!ended) res.write(`${JSON.stringify({ type, object })}\n`);
  };
  let timeout: NodeJS.Timeout | undefined;
  let bookmark: NodeJS.Timeout | undefined;
  let unsubscribe = () => {};
  const end = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    clearTimeout(timeout);
    clearTimeout(bookmark);
    res.end();
    onEnd();
  };

  const deliver = (e: StoreEvent) => {
    if (e.resource !== res_id || !inScope(e.object)) return;
    const now = match(e.object);
    const before = e.prev !== undefined && match(e.prev);
    if (e.type === "ADDED" && now) send("ADDED", withType(kind, e.object));
    else if (e.type === "MODIFIED") {
      // Objects entering or leaving the selection look like adds and deletes to this watcher.
      if (now && before) send("MODIFIED", withType(kind, e.object));
      else if (now) send("ADDED", withType(kind, e.object));
      else if (before) send("DELETED", withType(kind, e.object));
    } else if (e.type === "DELETED" && before) send("DELETED", withType(kind, e.object));
  };

  if (rvParam === "" || rvParam === "0") {
    for (const o of store.list(res_id, ns)) if (match(o)) send("ADDED", withType(kind, o));
  } else {
    const from = Number(rvParam);
    const backlog = store.since(from);
    if (backlog === undefined) {
      const status = expired(`too old resource version: ${from} (${store.oldestResumable() + 1})`).toStatus();
      send("ERROR", status);
      end();
      return end;
    }
    for (const e of backlog) deliver(e);
  }
  unsubscribe = store.subscribe(deliver);

  // As the real server: timeoutSeconds absent or 0 → the default lifetime.
  const timeoutMs =
    timeoutRaw !== null && Number(timeoutRaw) > 0 ? Number(timeoutRaw) * 1000 : opts.defaultTimeoutMs;
  timeout = setTimeout(end, timeoutMs);
  if (query.get("allowWatchBookmarks") === "true") {
    const tick = () => {
      send("BOOKMARK", {
        kind: kind.kind,
        apiVersion: groupVersion(kind),
        metadata: { resourceVersion: String(store.currentRV()) },
      });
      bookmark = setTimeout(tick, opts.bookmarkIntervalMs);
    };
    bookmark = setTimeout(tick, opts.bookmarkIntervalMs);
  }
  res.on("close", end);
  return end;
}
