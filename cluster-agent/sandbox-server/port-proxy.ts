import { type IncomingHttpHeaders, type IncomingMessage, request, type ServerResponse } from "node:http";
import { PORT_HEADERS_HEADER, PORT_UPSTREAM_HEADER } from "./protocol.ts";
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
