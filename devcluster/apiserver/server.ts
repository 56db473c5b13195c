import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";
import {
  ACCESS_REVIEW_PATH,
  RULES_REVIEW_PATH,
  selfSubjectAccessReview,
  selfSubjectRulesReview,
} from "./access-review.ts";
import { readBody } from "./body.ts";
import { proxyExec, proxyLogs, resolveExec, writeHttpError } from "./exec-proxy.ts";
import * as h from "./handlers.ts";
import { eventKind } from "./kinds/index.ts";
import { resourceId } from "./kinds/kind.ts";
import { keyOf } from "./objects.ts";
import { openApiV3 } from "./openapi.ts";
import {
  OPENAPI_V2_PROTOBUF,
  OPENAPI_V2_PROTOBUF_RESPONSE,
  openApiV2Json,
  openApiV2Protobuf,
} from "./openapi-v2.ts";
import { objectFromProtobuf, PROTOBUF } from "./protobuf.ts";
import { type Route, route } from "./routes.ts";
import {
  badRequest,
  internal,
  methodNotAllowed,
  pathNotFound,
  StatusError,
  unauthorized,
  unsupportedMediaType,
} from "./status.ts";
import { Store } from "./store.ts";
import { tableVersion, toTable } from "./table.ts";
import {
  type ApiServer,
  type ApiServerOptions,
  type AuditEntry,
  isObject,
  type JsonObject,
  type RequestLine,
} from "./types.ts";
import { serveWatch } from "./watch.ts";

type Verb = AuditEntry["verb"];

const OPEN_PATHS = new Set(["/healthz", "/readyz", "/livez", "/version"]);

function sendJson(
  res: ServerResponse,
  code: number,
  body: JsonObject | string,
  warnings: string[] = [],
): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const headers: Record<string, string | string[]> = {
    "Content-Type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
    "Content-Length": String(Buffer.byteLength(text)),
    "Cache-Control": "no-cache, private",
  };
  if (warnings.length > 0) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  res.writeHead(code, headers);
  res.end(text);
}

function bearer(req: IncomingMessage): string | undefined {
  const a = req.headers.authorization;
  if (a === undefined) return undefined;
  const m = a.match(/^Bearer\s+(.+)$/i);
  return m?.[1]?.trim() ?? "";
}

function verbOf(
  method: string,
  r: Extract<Route, { type: "resource" }>,
  q: URLSearchParams,
): Verb | undefined {
  const watch = q.get("watch") === "true" || q.get("watch") === "1";
  switch (method) {
    case "GET":
      if (watch) return "watch";
      return r.name === undefined ? "list" : "get";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return r.name === undefined ? "deletecollection" : "delete";
    default:
      return undefined;
  }
}

const BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];

/**
 * POST/PUT bodies: JSON, or protobuf for the kinds `objectFromProtobuf` reads (what kubectl's
 * typed `create namespace|secret` send), turned into the JSON they stand for; a missing
 * Content-Type is taken as JSON, as the real server does.
 */
function jsonBody(ctx: h.Ctx): void {
  const t = ctx.contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (t === "" || t === "application/json" || t === "*/*") return;
  if (t === PROTOBUF) {
    const obj = objectFromProtobuf(ctx.body);
    if (obj?.kind === ctx.kind.kind) {
      ctx.body = Buffer.from(JSON.stringify(obj));
      ctx.contentType = "application/json";
      return;
    }
  }
  throw unsupportedMediaType(BODY_TYPES);
}

/** Starts the devcluster API server on 127.0.0.1 (port 0 = any free port). */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const store = new Store(opts.historySize ?? 1000, opts.stateFile);
  // kube-apiserver's --event-ttl (default 1 h): Events are not kept forever.
  const eventTtl = setInterval(() => expireEvents(store, opts.eventTtlMs ?? 3_600_000), 60_000);
  eventTtl.unref();
  const watches = new Set<() => void>();
  const sockets = new Set<WebSocket>();
  const host = opts.host ?? "127.0.0.1";
  let hostPort = "";

  const audit = (e: AuditEntry) => {
    try {
      opts.audit?.(e);
    } catch {
      // An audit sink must never break the request path.
    }
  };

  const authenticate = (req: IncomingMessage): string | undefined => {
    const token = bearer(req);
    return token === undefined ? undefined : opts.tokens[token];
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://devcluster");
    const method = req.method ?? "GET";
    const token = bearer(req);
    const user = authenticate(req);
    if (OPEN_PATHS.has(url.pathname) && (token === undefined || user !== undefined)) {
      if (url.pathname === "/version") {
        sendJson(res, 200, {
          major: "1",
          minor: "26",
          gitVersion: "v1.26.0-devcluster",
          gitCommit: "devcluster",
          gitTreeState: "clean",
          buildDate: "2026-01-01T00:00:00Z",
          goVersion: "go1.19",
          compiler: "gc",
          platform: "linux/amd64",
        });
      } else sendJson(res, 200, "ok");
      return;
    }
    if (user === undefined) {
      req.resume();
      sendJson(res, 401, unauthorized().toStatus());
      return;
    }
    if (url.pathname === "/openapi/v2") {
      req.resume();
      if (method !== "GET") sendJson(res, 405, methodNotAllowed({ kind: "", group: "" }).toStatus());
      else if (String(req.headers.accept ?? "").includes(OPENAPI_V2_PROTOBUF)) {
        const doc = openApiV2Protobuf();
        res.writeHead(200, {
          "Content-Type": OPENAPI_V2_PROTOBUF_RESPONSE,
          "Content-Length": String(doc.length),
        });
        res.end(doc);
      } else sendJson(res, 200, openApiV2Json());
      return;
    }
    if (url.pathname === "/openapi/v3" || url.pathname.startsWith("/openapi/v3/")) {
      req.resume();
      const doc = openApiV3(url.pathname);
      if (method !== "GET") sendJson(res, 405, methodNotAllowed({ kind: "", group: "" }).toStatus());
      else if (doc) sendJson(res, 200, doc);
      else sendJson(res, 404, pathNotFound().toStatus());
      return;
    }
    const reviews = {
      [ACCESS_REVIEW_PATH]: ["SelfSubjectAccessReview", selfSubjectAccessReview],
      [RULES_REVIEW_PATH]: ["SelfSubjectRulesReview", selfSubjectRulesReview],
    } as const;
    const reviewOf = reviews[url.pathname as keyof typeof reviews];
    if (reviewOf) {
      const [kind, answer] = reviewOf;
      if (method !== "POST") {
        req.resume();
        sendJson(res, 405, methodNotAllowed({ kind, group: "authorization.k8s.io" }).toStatus());
        return;
      }
      const review = answer(await readBody(req), String(req.headers["content-type"] ?? ""));
      if (review.ok) sendJson(res, 201, review.body);
      else sendJson(res, review.error.code, review.error.toStatus());
      return;
    }
    const r = route(url.pathname, hostPort);
    if (r.type === "document") {
      req.resume();
      if (method !== "GET") sendJson(res, 405, methodNotAllowed({ kind: "", group: "" }).toStatus());
      else sendJson(res, 200, r.body);
      return;
    }
    if (r.type === "notfound") {
      req.resume();
      sendJson(res, 404, pathNotFound().toStatus());
      return;
    }
    const verb = verbOf(method, r, url.searchParams);
    const entry: AuditEntry = {
      user,
      verb: verb ?? "get",
      group: r.kind.group,
      version: r.kind.version,
      resource: r.kind.resource,
      code: 0,
    };
    if (r.subresource !== undefined) entry.subresource = r.subresource;
    if (r.namespace !== undefined) entry.namespace = r.namespace;
    if (r.name !== undefined) entry.name = r.name;
    let code = 500;
    try {
      const body = method === "GET" ? Buffer.alloc(0) : await readBody(req);
      if (method === "GET") req.resume();
      const ctx: h.Ctx = {
        store,
        kind: r.kind,
        namespace: r.namespace,
        name: r.name,
        subresource: r.subresource,
        query: url.searchParams,
        body,
        contentType: String(req.headers["content-type"] ?? ""),
      };
      if (verb === "watch" && r.subresource === undefined) {
        // GET …/NAME?watch=true (the deprecated single-object watch) = a watch on metadata.name.
        if (r.name !== undefined) {
          const fs = url.searchParams.get("fieldSelector");
          url.searchParams.set("fieldSelector", `metadata.name=${r.name}${fs ? `,${fs}` : ""}`);
          ctx.name = undefined;
        }
        code = 200;
        let stop: (() => void) | undefined;
        stop = serveWatch(
          ctx,
          res,
          {
            bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
            defaultTimeoutMs: opts.defaultWatchTimeoutMs ?? 1_800_000,
            table: tableVersion(String(req.headers.accept ?? "")),
          },
          () => {
            if (stop) watches.delete(stop);
          },
        );
        if (!res.writableEnded) watches.add(stop);
        return;
      }
      if (r.subresource === "log") {
        if (method !== "GET") throw methodNotAllowed({ kind: "pods", group: "" });
        const target = resolveExec(
          store,
          r.namespace ?? "default",
          r.name ?? "",
          url.searchParams,
          "containerLogs",
        );
        code = await proxyLogs(target.url, opts.kubeletClient, res);
        return;
      }
      if ((method === "POST" || method === "PUT") && r.subresource !== "exec") jsonBody(ctx);
      const reply = dispatch(ctx, method, verb, r.subresource);
      const table = tableVersion(String(req.headers.accept ?? ""));
      if (table && (verb === "get" || verb === "list") && r.subresource === undefined)
        reply.body = toTable(r.kind, reply.body, table, url.searchParams);
      code = reply.code;
      sendJson(res, reply.code, reply.body, reply.warnings);
    } catch (e) {
      const se = e instanceof StatusError ? e : internal(e instanceof Error ? e.message : String(e));
      code = se.code;
      if (!res.headersSent) sendJson(res, se.code, se.toStatus());
      else res.end();
    } finally {
      entry.code = code;
      audit(entry);
    }
  }

  function dispatch(ctx: h.Ctx, method: string, verb: Verb | undefined, sub: string | undefined): h.Reply {
    const notAllowed = () => methodNotAllowed({ kind: ctx.kind.resource, group: ctx.kind.group });
    if (sub === "exec") {
      if (method === "GET" || method === "POST") throw badRequest("Upgrade request required");
      throw notAllowed();
    }
    if (sub === "binding") {
      if (method !== "POST") throw notAllowed();
      return h.bind(ctx);
    }
    if (sub === "status") {
      if (verb === "get") return h.get(ctx);
      if (verb === "update") return h.update(ctx);
      if (verb === "patch") return h.patch(ctx);
      throw notAllowed();
    }
    switch (verb) {
      case "get":
        return h.get(ctx);
      case "list":
        return h.list(ctx);
      case "create":
        if (ctx.name !== undefined) throw notAllowed();
        if (ctx.kind.namespaced && ctx.namespace === undefined) throw notAllowed();
        return h.create(ctx);
      case "update":
        if (ctx.name === undefined) throw notAllowed();
        return h.update(ctx);
      case "patch":
        if (ctx.name === undefined) throw notAllowed();
        return h.patch(ctx);
      case "delete":
        return h.remove(ctx);
      case "deletecollection":
        return h.removeCollection(ctx);
      default:
        throw notAllowed();
    }
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const url = new URL(req.url ?? "/", "http://devcluster");
    const user = authenticate(req);
    if (user === undefined) {
      writeHttpError(socket, unauthorized());
      return;
    }
    const r = route(url.pathname, hostPort);
    if (
      r.type !== "resource" ||
      r.subresource !== "exec" ||
      r.namespace === undefined ||
      r.name === undefined
    ) {
      writeHttpError(socket, pathNotFound());
      return;
    }
    const base = {
      user,
      group: "",
      version: "v1",
      resource: "pods",
      subresource: "exec",
      namespace: r.namespace,
      name: r.name,
    };
    // The WebSocket handshake is a GET; since 1.30 the real server also requires `create` on pods/exec.
    const done = (code: number) => {
      audit({ ...base, verb: "get", code });
      audit({ ...base, verb: "create", code });
    };
    try {
      const target = resolveExec(store, r.namespace, r.name, url.searchParams);
      proxyExec(
        req,
        socket,
        head,
        target,
        opts.kubeletClient,
        (ws) => {
          sockets.add(ws);
          ws.on("close", () => sockets.delete(ws));
        },
        done,
      );
    } catch (e) {
      const se = e instanceof StatusError ? e : internal(String(e));
      writeHttpError(socket, se);
      done(se.code);
    }
  }

  let latency: ((r: RequestLine) => number | Promise<unknown>) | undefined;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const run = () =>
      handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) sendJson(res, 500, internal(String(e)).toStatus());
      });
    const wait = latency?.({ method: req.method ?? "GET", path: req.url ?? "/" }) ?? 0;
    if (typeof wait !== "number") void wait.then(run, run);
    else if (wait > 0) setTimeout(run, wait);
    else void run();
  };
  const server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest)
    : createServer(onRequest);
  server.on("upgrade", upgrade);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  hostPort = `${host}:${port}`;
  let closed: Promise<void> | undefined;
  return {
    url: `${opts.tls ? "https" : "http"}://${hostPort}`,
    setLatency(fn) {
      latency = fn;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        clearInterval(eventTtl);
        for (const stop of [...watches]) stop();
        for (const ws of sockets) ws.terminate();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** Removes Events last seen more than `ttlMs` ago. */
export function expireEvents(store: Store, ttlMs: number, now = Date.now()): void {
  const resource = resourceId(eventKind);
  for (const e of store.list(resource)) {
    const meta = isObject(e.metadata) ? e.metadata : {};
    const last = [e.lastTimestamp, e.eventTime, meta.creationTimestamp].find((t) => typeof t === "string");
    if (typeof last === "string" && now - Date.parse(last) > ttlMs)
      store.remove(resource, keyOf(String(meta.namespace ?? ""), String(meta.name ?? "")));
  }
}
