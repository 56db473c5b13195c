import type { IncomingMessage, ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { nodeKind, podKind } from "./kinds/index.ts";
import { resourceId } from "./kinds/kind.ts";
import { keyOf } from "./objects.ts";
import { badRequest, internal, notFound, type StatusError } from "./status.ts";
import type { Store } from "./store.ts";
import { isObject, type JsonObject } from "./types.ts";

/** Above this many bytes queued toward one side, reading from the other side pauses. */
const HIGH_WATER = 4 * 1024 * 1024;
const DIAL_TIMEOUT_MS = 10_000;

export interface ExecTarget {
  url: string;
}

/** What the API server presents to kubelets and the CA their serving certificates chain to. */
export interface KubeletClientTls {
  cert: string;
  key: string;
  ca: string;
}

/** Client-facing stream flags → the names a kubelet reads (as kube-apiserver's ExecLocation maps them). */
const KUBELET_PARAMS: Record<string, string> = {
  stdin: "input",
  stdout: "output",
  stderr: "error",
  tty: "tty",
};

function kubeletQuery(query: URLSearchParams): string {
  const out = new URLSearchParams();
  for (const c of query.getAll("command")) out.append("command", c);
  for (const [from, to] of Object.entries(KUBELET_PARAMS)) {
    const v = query.get(from);
    if (v !== null) out.set(to, ["1", "true"].includes(v) ? "1" : "0");
  }
  return out.toString();
}

/**
 * Resolves pod → node → kubelet endpoint for `pods/exec` (`wss://…/exec/…`) or `pods/log`
 * (`https://…/containerLogs/…`), with the real server's errors: 404 for a missing pod, 400 when it
 * has no node, is completed, or the container is unknown.
 */
export function resolveExec(
  store: Store,
  namespace: string,
  pod: string,
  query: URLSearchParams,
  endpoint: "exec" | "containerLogs" = "exec",
): ExecTarget {
  const obj = store.get(resourceId(podKind), keyOf(namespace, pod));
  if (!obj) throw notFound({ name: pod, group: "", kind: "pods" });
  const spec = (obj.spec ?? {}) as JsonObject;
  const containers = Array.isArray(spec.containers) ? spec.containers.filter(isObject) : [];
  let container = query.get("container") ?? "";
  // Without ?container= the first container is used (the real server requires one when there are several).
  if (container === "") container = String(containers[0]?.name ?? "");
  const known = [
    ...containers,
    ...(Array.isArray(spec.initContainers) ? spec.initContainers.filter(isObject) : []),
  ];
  if (!known.some((c) => c.name === container))
    throw badRequest(`container ${container} is not valid for pod ${pod}`);
  const nodeName = spec.nodeName;
  if (typeof nodeName !== "string" || nodeName === "")
    throw badRequest(`pod ${pod} does not have a host assigned`);
  const node = store.get(resourceId(nodeKind), keyOf(undefined, nodeName));
  if (!node) throw notFound({ name: nodeName, group: "", kind: "nodes" });
  const nstatus = (node.status ?? {}) as JsonObject;
  const addresses = Array.isArray(nstatus.addresses) ? nstatus.addresses.filter(isObject) : [];
  const ip = addresses.find((a) => a.type === "InternalIP")?.address;
  const endpoints = isObject(nstatus.daemonEndpoints) ? nstatus.daemonEndpoints : {};
  const kubelet = isObject(endpoints.kubeletEndpoint) ? endpoints.kubeletEndpoint : {};
  const port = kubelet.Port;
  if (typeof ip !== "string" || typeof port !== "number" || port <= 0) {
    throw internal(`node ${nodeName} has no InternalIP address or kubelet port`);
  }
  const host = ip.includes(":") ? `[${ip}]` : ip;
  const path = `${encodeURIComponent(namespace)}/${encodeURIComponent(pod)}/${encodeURIComponent(container)}`;
  if (endpoint === "containerLogs") {
    // What devcluster's kubelet reads of kube-apiserver's LogLocation parameters.
    const logQuery = new URLSearchParams();
    for (const k of ["follow", "tailLines"]) {
      const v = query.get(k);
      if (v !== null) logQuery.set(k, v);
    }
    const qs = logQuery.toString();
    return { url: `https://${host}:${port}/containerLogs/${path}${qs === "" ? "" : `?${qs}`}` };
  }
  const qs = kubeletQuery(query);
  return { url: `wss://${host}:${port}/exec/${path}${qs === "" ? "" : `?${qs}`}` };
}

/**
 * Streams a container's log from its kubelet (HTTPS with the API server's client certificate) as
 * `text/plain`; a kubelet's refusal becomes a 400 Status with its message, as kube-apiserver relays it.
 */
export function proxyLogs(url: string, tls: KubeletClientTls, res: ServerResponse): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: "GET", cert: tls.cert, key: tls.key, ca: tls.ca, timeout: DIAL_TIMEOUT_MS },
      (kres) => {
        if (kres.statusCode !== 200) {
          const chunks: Buffer[] = [];
          kres.on("data", (c: Buffer) => chunks.push(c));
          kres.on("end", () => reject(badRequest(Buffer.concat(chunks).toString("utf8").trim())));
          return;
        }
        // A followed log may be quiet for long: only the dial has a timeout, and a client that
        // goes away ends the kubelet's stream too.
        req.setTimeout(0);
        res.on("close", () => req.destroy());
        res.writeHead(200, { "content-type": "text/plain" });
        kres.pipe(res);
        kres.on("end", () => resolve(200));
        kres.on("error", () => {
          res.destroy();
          resolve(200);
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`kubelet did not answer within ${DIAL_TIMEOUT_MS} ms`)));
    req.on("error", (err) => reject(internal(`error dialing kubelet: ${err.message}`)));
    req.end();
  });
}

export function writeHttpError(socket: Duplex, e: StatusError): void {
  writeRaw(socket, e.code, JSON.stringify(e.toStatus()), "application/json");
}

function writeRaw(socket: Duplex, code: number, body: string, contentType: string): void {
  if (socket.destroyed) return;
  const reason =
    code === 400 ? "Bad Request" : code === 401 ? "Unauthorized" : code === 404 ? "Not Found" : "Error";
  socket.end(
    `HTTP/1.1 ${code} ${reason}\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Close codes that may be sent on the wire (1005/1006/1015 are reserved for "none"/"abnormal"). */
function sendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

function pipe(from: WebSocket, to: WebSocket): void {
  from.on("message", (data: RawData, isBinary: boolean) => {
    if (to.readyState !== WebSocket.OPEN) return;
    to.send(data, { binary: isBinary }, () => {
      if (to.bufferedAmount < HIGH_WATER && from.isPaused) from.resume();
    });
    if (to.bufferedAmount >= HIGH_WATER) from.pause();
  });
  from.on("close", (code: number, reason: Buffer) => {
    if (to.readyState === WebSocket.OPEN || to.readyState === WebSocket.CONNECTING) {
      if (sendable(code)) to.close(code, reason);
      else to.terminate();
    }
  });
  from.on("error", () => to.terminate());
}

/** Completes an exec upgrade: dials the kubelet, answers the client with the kubelet's subprotocol, pipes frames. */
export function proxyExec(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: ExecTarget,
  tls: KubeletClientTls,
  track: (ws: WebSocket) => void,
  onDone: (code: number) => void,
): void {
  const offered = (req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  // As kube-apiserver dials a kubelet: TLS, verified against the kubelet CA, with a client certificate.
  const upstream = new WebSocket(target.url, offered, {
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    handshakeTimeout: DIAL_TIMEOUT_MS,
    perMessageDeflate: false,
  });
  track(upstream);
  let settled = false;
  socket.on("error", () => upstream.terminate());
  upstream.on("unexpected-response", (_r, res) => {
    settled = true;
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => {
      const code = res.statusCode ?? 502;
      writeRaw(
        socket,
        code,
        Buffer.concat(chunks).toString("utf8"),
        String(res.headers["content-type"] ?? "text/plain"),
      );
      onDone(code);
    });
    res.on("error", () => socket.destroy());
  });
  upstream.on("error", (err) => {
    if (settled) return;
    settled = true;
    const e = internal(`error dialing backend: ${err.message}`);
    writeHttpError(socket, e);
    onDone(e.code);
  });
  upstream.on("open", () => {
    settled = true;
    const chosen = upstream.protocol;
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: () => (chosen === "" ? false : chosen),
    });
    upstream.pause();
    wss.handleUpgrade(req, socket, head, (client) => {
      track(client);
      upstream.resume();
      pipe(client, upstream);
      pipe(upstream, client);
      onDone(101);
    });
  });
}
