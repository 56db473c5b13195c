import { type IncomingHttpHeaders, type IncomingMessage, request, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  type ExecServerErrorBody,
  type ExecServerErrorCode,
  PORT_HEADERS_HEADER,
  PORT_UPSTREAM_HEADER,
} from "./protocol.ts";
import { sendError } from "./respond.ts";

/**
 * `/ports/<port><path>`: one HTTP request proxied to 127.0.0.1:<port> in this pod, both bodies
 * streaming (pipe: the reader's pace is the writer's, so memory stays bounded). This is how a port
 * link reaches a sandbox's server without the NetworkPolicy opening any port of the pod: only the
 * exec server's, which the agent already reaches.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1) and what this hop sets itself; never passed on. */
const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/** Connecting to loopback is immediate; a port that takes longer is not being served. */
const CONNECT_TIMEOUT_MS = 10_000;

export interface PortProxyOptions {
  /** This server's own port: never proxied (its routes need the pool token; a link must not reach them). */
  ownPort: number;
}

/** The port and the app's path of a `/ports/…` URL, or null when it is not one. */
export function parsePortsUrl(url: string): { port: string; path: string } | null {
  const m = /^\/ports\/([^/?#]+)(.*)$/s.exec(url);
  if (!m) return null;
  const rest = m[2] ?? "";
  return { port: m[1] ?? "", path: rest.startsWith("/") ? rest : `/${rest}` };
}

export function handlePortProxy(req: IncomingMessage, res: ServerResponse, o: PortProxyOptions): void {
  const parsed = parsePortsUrl(req.url ?? "");
  const port = Number(parsed?.port);
  if (!parsed || !/^[1-9][0-9]{0,4}$/.test(parsed.port) || port > 65_535 || port === o.ownPort) {
    req.resume();
    sendError(res, 400, "port_not_allowed", `port ${parsed?.port.slice(0, 10) ?? "?"} cannot be linked`);
    return;
  }
  const headers = appHeaders(req.headers[PORT_HEADERS_HEADER]);
  if (!headers) {
    req.resume();
    sendError(res, 400, "invalid_request", `${PORT_HEADERS_HEADER} must be a JSON list of [name, value]`);
    return;
  }
  // Dev servers check Host against their own name (Vite's allowedHosts): this is the one they know.
  headers.host = `localhost:${port}`;
  const upstream = request({
    host: "127.0.0.1",
    port,
    method: req.method ?? "GET",
    path: parsed.path,
    headers,
    // One connection per request: the app sees each request on its own, nothing is pooled across links.
    agent: false,
  });
  let answered = false;
  const connectTimer = setTimeout(() => upstream.destroy(new Error("connect timeout")), CONNECT_TIMEOUT_MS);
  upstream.on("socket", (s) => s.once("connect", () => clearTimeout(connectTimer)));
  upstream.on("error", (e: NodeJS.ErrnoException) => {
    clearTimeout(connectTimer);
    if (answered || res.headersSent) {
      res.destroy();
      return;
    }
    answered = true;
    req.resume();
    const refused = e.code === "ECONNREFUSED" || e.message === "connect timeout";
    sendError(
      res,
      502,
      "port_not_listening",
      refused
        ? `nothing is listening on port ${port} in the sandbox (yet)`
        : `the server on port ${port} closed the connection without answering`,
    );
  });
  upstream.on("response", (up) => {
    answered = true;
    const out: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(up.headers)) {
      if (value !== undefined && !HOP.has(name)) out[name] = value;
    }
    out[PORT_UPSTREAM_HEADER] = "1";
    res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
    up.pipe(res);
    up.on("error", () => res.destroy());
  });
  // The caller left (the link's client, or the agent's call aborted): stop the app's request too.
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/** The app request's headers as the agent sent them, minus hop-by-hop ones; null when malformed. */
function appHeaders(raw: IncomingHttpHeaders[string]): Record<string, string | string[]> | null {
  if (raw === undefined) return {};
  if (typeof raw !== "string") return null;
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!Array.isArray(list)) return null;
  const out: Record<string, string | string[]> = {};
  for (const pair of list) {
    if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string") return null;
    const name = pair[0].toLowerCase();
    if (HOP.has(name) || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name) || /[\r\n\0]/.test(pair[1])) continue;
    const prev = out[name];
    out[name] = prev === undefined ? pair[1] : [prev, pair[1]].flat();
  }
  return out;
}

/** The WebSocket handshake's own headers: taken from the agent's upgrade, never from the app headers. */
const HANDSHAKE = [
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
];

/**
 * A WebSocket upgrade to `/ports/<port><path>` (already authenticated and fenced by the caller):
 * the app's handshake request is written to 127.0.0.1:<port> with the app's headers and the
 * agent's handshake headers, and from then on the two sockets are piped byte for byte — the
 * agent's WebSocket client and the app speak the protocol end to end (the handshake's accept key
 * included); this server never parses a frame. Nothing listening: `502 port_not_listening` as a
 * plain answer to the upgrade.
 */
export function handlePortUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  o: PortProxyOptions,
): void {
  const parsed = parsePortsUrl(req.url ?? "");
  const port = Number(parsed?.port);
  if (!parsed || !/^[1-9][0-9]{0,4}$/.test(parsed.port) || port > 65_535 || port === o.ownPort) {
    refuseUpgrade(
      socket,
      400,
      "port_not_allowed",
      `port ${parsed?.port.slice(0, 10) ?? "?"} cannot be linked`,
    );
    return;
  }
  const headers = appHeaders(req.headers[PORT_HEADERS_HEADER]);
  if (!headers) {
    refuseUpgrade(
      socket,
      400,
      "invalid_request",
      `${PORT_HEADERS_HEADER} must be a JSON list of [name, value]`,
    );
    return;
  }
  for (const name of HANDSHAKE) delete headers[name];
  const lines = [
    `GET ${parsed.path} HTTP/1.1`,
    `host: localhost:${port}`,
    "connection: Upgrade",
    "upgrade: websocket",
  ];
  for (const name of HANDSHAKE) {
    const v = req.headers[name];
    if (typeof v === "string") lines.push(`${name}: ${v}`);
  }
  for (const [name, value] of Object.entries(headers))
    for (const v of [value].flat()) lines.push(`${name}: ${v}`);
  const upstream: Socket = connect({ host: "127.0.0.1", port });
  upstream.setTimeout(CONNECT_TIMEOUT_MS, () => upstream.destroy(new Error("connect timeout")));
  let connected = false;
  upstream.once("connect", () => {
    connected = true;
    upstream.setTimeout(0);
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on("error", () => {
    if (!connected)
      refuseUpgrade(
        socket,
        502,
        "port_not_listening",
        `nothing is listening on port ${port} in the sandbox (yet)`,
      );
    else socket.destroy();
  });
  upstream.on("close", () => socket.destroy());
  socket.on("error", () => upstream.destroy());
  socket.on("close", () => upstream.destroy());
}

/** An error answered on a raw socket (an upgrade has no ServerResponse), then closed. */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  code: ExecServerErrorCode,
  message: string,
): void {
  const body: ExecServerErrorBody = { error: { code, message } };
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}
