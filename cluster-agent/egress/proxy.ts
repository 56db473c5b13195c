import { lookup as dnsLookup } from "node:dns/promises";
import {
  type ClientRequest,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { type AddressInfo, connect, isIP, type Socket } from "node:net";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import {
  decide,
  decideAddress,
  type EgressPolicy,
  normalizeDestination,
  type SecretBinding,
  secretsFor,
} from "../../shared/egress-policy.ts";
import { type AddressCheck, DEFAULT_FORBIDDEN, forbiddenRanges } from "./addresses.ts";
import { withSecrets } from "./secrets.ts";
import { MAX_HELLO_BYTES, readClientHello } from "./sni.ts";
import type {
  EgressCut,
  EgressEvent,
  EgressRefusal,
  EgressSink,
  Resolver,
  SandboxEgress,
  SandboxLookup,
} from "./types.ts";
import { type CertificateAuthority, certIssuer } from "./x509.ts";

export interface EgressProxyOptions {
  lookup: SandboxLookup;
  onEvent: EgressSink;
  /** Default: the system resolver (getaddrinfo), every address it returns. */
  resolve?: Resolver;
  /** CIDRs never reached whatever the policy says. Default DEFAULT_FORBIDDEN; add cluster/pod/service ranges. */
  forbidden?: readonly string[];
  /** Open connections (tunnels + in-flight plain requests) per sandbox. Default 64. */
  maxConnectionsPerSandbox?: number;
  /**
   * Bytes (both ways, all connections) a sandbox may move through this proxy; then its connections
   * are closed and new ones refused. Checked every `byteCheckMs` (default 1000), so a sandbox may
   * overshoot by what it moves in that time. Default: no cap. `forget()` a deleted sandbox.
   */
  maxBytesPerSandbox?: number;
  byteCheckMs?: number;
  /** The per-cluster CA the proxy signs intercepted hosts' certificates with; without it no secret is added. */
  ca?: CertificateAuthority;
  /** Trusted roots for upstreams of intercepted hosts (default: Node's bundled roots). */
  upstreamCa?: string | readonly string[];
  timeouts?: Partial<Timeouts>;
}

interface Timeouts {
  resolveMs: number;
  connectMs: number;
  /** From the tunnel's 200 to a complete ClientHello. */
  helloMs: number;
  /** A tunnel or request with no traffic either way for this long is closed. */
  idleMs: number;
}
const DEFAULT_TIMEOUTS: Timeouts = { resolveMs: 5_000, connectMs: 10_000, helloMs: 10_000, idleMs: 300_000 };

const STATUS: Record<EgressRefusal, number> = {
  egress_unknown_source: 403,
  egress_not_allowed: 403,
  egress_denied_by_rule: 403,
  egress_forbidden_address: 403,
  egress_bad_request: 400,
  egress_connection_limit: 429,
  egress_byte_limit: 429,
  egress_resolve_failed: 502,
  egress_connect_failed: 502,
  egress_timeout: 504,
  egress_upstream_tls: 502,
  egress_misdirected: 421,
  // After the tunnel's 200 there is no status to send: these close the tunnel.
  egress_sni_mismatch: 403,
  egress_not_tls: 403,
};

/** A refusal as a value: code, human message (destination only, never a header). */
class Refused extends Error {
  constructor(
    readonly code: EgressRefusal,
    message: string,
  ) {
    super(message);
  }
}

export interface OpenConnection {
  tenant: string;
  sandbox: string;
  host: string;
  port: number;
  address: string;
  mode: EgressEvent["mode"];
}

interface Conn extends OpenConnection {
  source: string;
  key: string;
  egress: SandboxEgress;
  started: number;
  /** Bytes moved so far, both ways (live socket counters). */
  bytes(): number;
  close(by: EgressCut): void;
}

export interface EgressProxy {
  readonly server: Server;
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Re-reads every open connection's sandbox through `lookup` (call it after replacing a policy)
   * and closes the ones the new policy forbids, or whose source is no longer that sandbox.
   * Resolves to the number closed. New connections always use the current policy.
   */
  revalidate(): Promise<number>;
  openConnections(): OpenConnection[];
  /** Drops a sandbox's byte count (call when the sandbox is deleted). */
  forget(tenant: string, sandbox: string): void;
  close(): Promise<void>;
}

const HOP_BY_HOP = [
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = String(headers.connection ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase());
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers))
    if (v !== undefined && !HOP_BY_HOP.includes(k) && !named.includes(k)) out[k] = v;
  return out;
}

const bareAddress = (a: string | undefined) => (a ?? "").replace(/^::ffff:(?=\d+\.)/, "");

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(new Refused("egress_timeout", `${what} took longer than ${ms} ms`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

const systemResolver: Resolver = async (host) =>
  (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** `host:port` of a CONNECT line (IPv6 in brackets), or undefined. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):([0-9]{1,5})$/.exec(authority);
  if (!m) return undefined;
  const host = normalizeDestination(m[1] as string);
  const port = Number(m[2]);
  return host && port >= 1 && port <= 65535 ? { host, port } : undefined;
}

export function createEgressProxy(opts: EgressProxyOptions): EgressProxy {
  const t: Timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const resolve = opts.resolve ?? systemResolver;
  const isForbidden: AddressCheck = forbiddenRanges(opts.forbidden ?? DEFAULT_FORBIDDEN);
  const maxPerSandbox = opts.maxConnectionsPerSandbox ?? 64;
  const issue = opts.ca ? certIssuer(opts.ca) : undefined;
  const leafCache = new Map<string, { ctx: SecureContext; notAfter: Date }>();
  const upstreamCa = opts.upstreamCa ? [opts.upstreamCa].flat() : undefined;
  const open = new Set<Conn>();
  /** Bytes of closed connections per sandbox key; open ones are read live. */
  const spent = new Map<string, number>();
  let generation = 0;
  /** An intercepted tunnel's TLS socket → its connection and its one kept-alive upstream connection. */
  const intercepted = new WeakMap<Socket, { conn: Conn; upstreamAgent: HttpsAgent }>();

  const countOf = (key: string) => [...open].filter((c) => c.key === key).length;
  const bytesOf = (key: string) =>
    [...open].reduce((n, c) => (c.key === key ? n + c.bytes() : n), spent.get(key) ?? 0);

  function untrack(conn: Conn) {
    if (!open.delete(conn)) return;
    spent.set(conn.key, (spent.get(conn.key) ?? 0) + conn.bytes());
  }

  const maxBytes = opts.maxBytesPerSandbox;
  const overBudget = (key: string) => maxBytes !== undefined && bytesOf(key) >= maxBytes;
  const sweep =
    maxBytes === undefined
      ? undefined
      : setInterval(() => {
          for (const conn of [...open]) if (overBudget(conn.key)) conn.close("byte_limit");
        }, opts.byteCheckMs ?? 1000);
  sweep?.unref();

  const emit = (e: Omit<EgressEvent, "type">) => {
    try {
      opts.onEvent({ type: "egress", ...e });
    } catch {
      // A broken sink must not break the proxy.
    }
  };

  /** Who is calling, what they may reach, and the checked address to connect to; or a refusal. */
  async function admit(
    source: string,
    host: string,
    port: number,
  ): Promise<{ egress: SandboxEgress; address: string; generation: number }> {
    const seenGeneration = generation;
    const egress = await opts.lookup(source);
    if (!egress) throw new Refused("egress_unknown_source", `${source} is not a sandbox this proxy serves`);
    const d = decide(egress.policy, host, port);
    if (!d.allowed)
      throw Object.assign(
        new Refused(
          d.reason === "denied_by_rule" ? "egress_denied_by_rule" : "egress_not_allowed",
          d.message,
        ),
        { egress },
      );
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      try {
        addresses = await withTimeout(resolve(host), t.resolveMs, `resolving ${host}`);
      } catch (err) {
        if (err instanceof Refused) throw Object.assign(err, { egress });
        throw Object.assign(new Refused("egress_resolve_failed", `${host} did not resolve`), { egress });
      }
    }
    // The address checked here is the one connected to: a later answer for the same name (rebinding) is never used.
    const address = addresses.find((a) => !isForbidden(a) && decideAddress(egress.policy, a, port).allowed);
    if (!address)
      throw Object.assign(
        new Refused(
          "egress_forbidden_address",
          addresses.length === 0
            ? `${host} did not resolve`
            : `${host} resolves to ${addresses.join(", ")}, which sandboxes may not reach`,
        ),
        { egress },
      );
    return { egress, address, generation: seenGeneration };
  }

  async function admitted(source: string, host: string, port: number) {
    try {
      return await admit(source, host, port);
    } catch (err) {
      return refusalOf(err);
    }
  }

  function refusalOf(err: unknown): Refused & { egress?: SandboxEgress } {
    if (err instanceof Refused) return err;
    return new Refused("egress_connect_failed", "the proxy could not open the connection");
  }

  function refusedEvent(
    source: string,
    host: string,
    port: number,
    mode: EgressEvent["mode"],
    r: Refused & { egress?: SandboxEgress },
  ) {
    emit({
      decision: "denied",
      source,
      ...(r.egress ? { tenant: r.egress.tenant, sandbox: r.egress.sandbox } : {}),
      host,
      port,
      mode,
      reason: r.code,
      message: r.message,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
    });
  }

  const refusalBody = (r: Refused) => `${r.code}: ${r.message}\n`;

  /** The one refusal answer on an HTTP response: status, `x-egress-refused`, `<code>: <why>`. */
  function answerRefusal(res: ServerResponse, r: Refused) {
    if (res.headersSent) return void res.destroy();
    res.writeHead(STATUS[r.code], {
      "x-egress-refused": r.code,
      "content-type": "text/plain; charset=utf-8",
    });
    res.end(refusalBody(r));
  }

  /** The one event of a connection that was let through (and may have failed or been cut since). */
  function ended(
    conn: Conn,
    failure: Refused | undefined,
    closedBy: EgressCut | undefined,
    bytes: { up: number; down: number },
  ) {
    emit({
      decision: failure ? "denied" : "allowed",
      source: conn.source,
      tenant: conn.tenant,
      sandbox: conn.sandbox,
      host: conn.host,
      port: conn.port,
      address: conn.address,
      mode: conn.mode,
      ...(failure ? { reason: failure.code, message: failure.message } : {}),
      ...(closedBy ? { closedBy } : {}),
      bytesUp: bytes.up,
      bytesDown: bytes.down,
      durationMs: Math.round(performance.now() - conn.started),
    });
  }

  function track(c: Omit<Conn, "key" | "started">): Conn {
    const conn: Conn = { ...c, key: `${c.tenant}/${c.sandbox}`, started: performance.now() };
    open.add(conn);
    return conn;
  }

  function leafContext(host: string): SecureContext {
    const cached = leafCache.get(host);
    if (cached && cached.notAfter.getTime() - Date.now() > 86400_000) return cached.ctx;
    if (!issue || !opts.ca) throw new Error("no CA");
    const leaf = issue([host]);
    const ctx = createSecureContext({ cert: `${leaf.certPem}${opts.ca.certPem}`, key: leaf.keyPem });
    leafCache.set(host, { ctx, notAfter: leaf.notAfter });
    return ctx;
  }

  function connectUpstream(address: string, port: number): Promise<Socket> {
    return new Promise((resolveSocket, reject) => {
      const s = connect({ host: address, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new Refused(
            "egress_timeout",
            `connecting to ${address}:${port} took longer than ${t.connectMs} ms`,
          ),
        );
      }, t.connectMs);
      s.once("connect", () => {
        clearTimeout(timer);
        s.removeAllListeners("error");
        resolveSocket(s);
      });
      s.once("error", () => {
        clearTimeout(timer);
        reject(new Refused("egress_connect_failed", `${address}:${port} refused or reset the connection`));
      });
    });
  }

  /** Bytes after the tunnel's 200 until a whole first TLS record (or proof it is not TLS). */
  function readHello(socket: Socket, head: Buffer): Promise<Buffer> {
    return new Promise((resolveHello, reject) => {
      let buf = head;
      const done = (err?: Refused) => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("close", onClose);
        socket.off("end", onClose);
        socket.pause();
        if (err) reject(err);
        else resolveHello(buf);
      };
      const check = () => {
        const h = readClientHello(buf);
        if (h.kind !== "incomplete" || buf.length >= MAX_HELLO_BYTES) done();
      };
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        check();
      };
      const onClose = () =>
        done(new Refused("egress_not_tls", "the client closed the tunnel before its TLS hello"));
      const timer = setTimeout(
        () => done(new Refused("egress_timeout", `no TLS ClientHello within ${t.helloMs} ms`)),
        t.helloMs,
      );
      socket.on("data", onData);
      socket.on("close", onClose);
      // http.Server sockets are half-open: a client's FIN alone does not close them.
      socket.on("end", onClose);
      socket.resume();
      check();
    });
  }

  async function onConnect(req: IncomingMessage, socket: Socket, head: Buffer) {
    const source = bareAddress(socket.remoteAddress);
    socket.on("error", () => socket.destroy());
    const target = parseAuthority(req.url ?? "");
    const host = target?.host ?? String(req.url).slice(0, 300);
    const port = target?.port ?? 0;
    const refuse = (r: Refused & { egress?: SandboxEgress }) => {
      refusedEvent(source, host, port, "tunnel", r);
      const body = refusalBody(r);
      socket.end(
        `HTTP/1.1 ${STATUS[r.code]} Egress Refused\r\nx-egress-refused: ${r.code}\r\n` +
          `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `connection: close\r\n\r\n${body}`,
      );
    };
    if (!target) return refuse(new Refused("egress_bad_request", "CONNECT needs host:port"));
    const admission = await admitted(source, host, port);
    if (admission instanceof Refused) return refuse(admission);
    const { egress, address, generation: admittedAt } = admission;
    const bindings = isIP(host)
      ? []
      : secretsFor(egress.policy, host, port).filter((b) => egress.secrets?.has(b.name));
    const intercept = bindings.length > 0 && issue !== undefined;
    let upstream: Socket | undefined;
    let upstreamAgent: HttpsAgent | undefined;
    let closedBy: EgressCut | undefined;
    // Bytes are counted from the tunnel's 200; a connection cut before it moved none.
    let baseRead: number | undefined;
    let baseWritten = 0;
    // Counted from before the upstream connect, so a sandbox cannot exceed its cap with slow connects.
    const conn = trackChecked(
      {
        tenant: egress.tenant,
        sandbox: egress.sandbox,
        host,
        port,
        address,
        mode: intercept ? "intercept" : "tunnel",
        source,
        egress,
        bytes: () =>
          baseRead === undefined
            ? 0
            : Math.max(0, socket.bytesRead - baseRead) + Math.max(0, socket.bytesWritten - baseWritten),
        close: (by) => {
          closedBy ??= by;
          socket.destroy();
          upstream?.destroy();
        },
      },
      admittedAt,
    );
    if (conn instanceof Refused) return refuse(conn);
    let finished = false;
    const finish = (reason?: Refused) => {
      if (finished) return;
      finished = true;
      untrack(conn);
      socket.destroy();
      upstream?.destroy();
      upstreamAgent?.destroy();
      ended(conn, reason, closedBy, {
        up: baseRead === undefined ? 0 : Math.max(0, socket.bytesRead - baseRead),
        down: baseRead === undefined ? 0 : Math.max(0, socket.bytesWritten - baseWritten),
      });
    };
    socket.once("close", () => finish());
    if (!intercept) {
      try {
        upstream = await connectUpstream(address, port);
      } catch (err) {
        if (finished) return;
        finished = true;
        untrack(conn);
        return refuse(Object.assign(refusalOf(err), { egress }));
      }
      if (finished || socket.destroyed) {
        upstream.destroy();
        return finish();
      }
    }
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    baseRead = socket.bytesRead - head.length;
    baseWritten = socket.bytesWritten;
    socket.setTimeout(t.idleMs, () => {
      closedBy ??= "idle";
      finish();
    });
    let hello: Buffer;
    try {
      hello = await readHello(socket, head);
    } catch (err) {
      return finish(refusalOf(err));
    }
    const parsed = readClientHello(hello);
    if (parsed.kind !== "tls")
      return finish(
        new Refused(
          "egress_not_tls",
          "a tunnel must start with a TLS ClientHello (plain HTTP goes without CONNECT)",
        ),
      );
    const sni = parsed.serverName === undefined ? undefined : normalizeDestination(parsed.serverName);
    // A name must be named again in the SNI; an address target may omit it (SNI cannot carry an IP).
    if (sni !== host && !(sni === undefined && isIP(host)))
      return finish(
        new Refused(
          "egress_sni_mismatch",
          `the TLS server name "${parsed.serverName ?? ""}" is not the CONNECT host ${host}`,
        ),
      );
    if (!intercept && upstream) {
      const up = upstream;
      up.on("error", () => finish());
      up.once("close", () => finish());
      up.setTimeout(t.idleMs, () => {
        closedBy ??= "idle";
        finish();
      });
      up.write(hello);
      socket.pipe(up);
      up.pipe(socket);
      socket.resume();
      return;
    }
    // Terminate TLS for this host with a certificate from the cluster CA; requests go on to the
    // real host, over TLS verified against upstreamCa, with the bound secrets added.
    socket.unshift(hello);
    let ctx: SecureContext;
    try {
      ctx = leafContext(host);
    } catch {
      return finish(new Refused("egress_upstream_tls", "the proxy could not issue a certificate"));
    }
    const tls = new TLSSocket(socket, { isServer: true, secureContext: ctx, ALPNProtocols: ["http/1.1"] });
    tls.on("error", () => finish());
    // The TLS socket now reads the raw one's handle, so activity is seen (and the idle timer reset) there.
    socket.setTimeout(0);
    tls.setTimeout(t.idleMs, () => {
      closedBy ??= "idle";
      finish();
    });
    // Requests of one tunnel reuse one verified upstream connection (HTTP/1.1 sends them in turn).
    upstreamAgent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    intercepted.set(tls, { conn, upstreamAgent });
    interceptServer.emit("connection", tls);
  }

  /** A request inside an intercepted tunnel: same host only, secrets added, upstream verified. */
  function onInterceptedRequest(req: IncomingMessage, res: ServerResponse) {
    const tunnel = intercepted.get(req.socket as Socket);
    if (!tunnel) return res.destroy();
    const { conn, upstreamAgent } = tunnel;
    const refuse = (r: Refused) => answerRefusal(res, r);
    const hostHeader = parseAuthority(
      /:[0-9]+$/.test(req.headers.host ?? "")
        ? String(req.headers.host)
        : `${req.headers.host ?? ""}:${conn.port}`,
    );
    if (!hostHeader || hostHeader.host !== conn.host || hostHeader.port !== conn.port)
      return refuse(new Refused("egress_misdirected", `this tunnel is for ${conn.host}:${conn.port} only`));
    // The sandbox's current policy: a secret unbound since the tunnel opened is no longer added.
    const bindings: SecretBinding[] = secretsFor(conn.egress.policy, conn.host, conn.port);
    const headers = endToEnd(withSecrets(req.headers, bindings, conn.egress)) as IncomingHttpHeaders;
    const up = httpsRequest({
      host: conn.address,
      port: conn.port,
      // The certificate is checked against servername (not the address in host): Node's default
      // checkServerIdentity; a custom one would also stop the agent from reusing the connection.
      servername: conn.host,
      method: req.method,
      path: req.url,
      headers: headers as OutgoingHttpHeaders,
      agent: upstreamAgent,
      ...(upstreamCa ? { ca: upstreamCa as string[] } : {}),
      timeout: t.idleMs,
    });
    up.on("response", (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.headers));
      upRes.pipe(res);
    });
    up.on("timeout", () => up.destroy(new Refused("egress_timeout", `${conn.host} did not answer in time`)));
    up.on("error", (err) => {
      const tlsFailure =
        "code" in err && /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS/.test(String(err.code));
      refuse(
        err instanceof Refused
          ? err
          : tlsFailure
            ? new Refused(
                "egress_upstream_tls",
                `${conn.host} did not present a certificate the proxy trusts`,
              )
            : new Refused(
                "egress_connect_failed",
                `${conn.host}:${conn.port} refused or reset the connection`,
              ),
      );
    });
    req.pipe(up);
  }

  /** Plain HTTP by absolute URI: one upstream connection per request, no secrets (they would cross in clear). */
  async function onRequest(req: IncomingMessage, res: ServerResponse) {
    const source = bareAddress(req.socket.remoteAddress);
    let url: URL | undefined;
    try {
      url = new URL(req.url ?? "");
    } catch {}
    const target = url?.protocol === "http:" ? normalizeDestination(url.hostname) : undefined;
    const host = target ?? String(req.url).slice(0, 300);
    const port = url?.port ? Number(url.port) : 80;
    const refuse = (r: Refused & { egress?: SandboxEgress }) => {
      refusedEvent(source, host, port, "http", r);
      answerRefusal(res, r);
    };
    if (!url || !target)
      return refuse(
        new Refused("egress_bad_request", "send http:// requests by absolute URI, https:// through CONNECT"),
      );
    const admission = await admitted(source, target, port);
    if (admission instanceof Refused) return refuse(admission);
    const { egress, address, generation: admittedAt } = admission;
    let closedBy: EgressCut | undefined;
    let up: ClientRequest | undefined;
    let upSocket: Socket | undefined;
    const conn = trackChecked(
      {
        tenant: egress.tenant,
        sandbox: egress.sandbox,
        host: target,
        port,
        address,
        mode: "http",
        source,
        egress,
        bytes: () => (upSocket ? upSocket.bytesRead + upSocket.bytesWritten : 0),
        close: (by) => {
          closedBy ??= by;
          up?.destroy();
          res.destroy();
        },
      },
      admittedAt,
    );
    if (conn instanceof Refused) return refuse(conn);
    const headers = endToEnd(req.headers);
    headers.host = url.host;
    up = httpRequest({
      host: address,
      port,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      agent: false,
      setHost: false,
      timeout: t.connectMs,
    });
    up.on("socket", (s) => {
      upSocket = s;
      s.setTimeout(t.idleMs, () => {
        closedBy ??= "idle";
        up.destroy();
      });
    });
    let failure: Refused | undefined;
    res.once("close", () => {
      untrack(conn);
      up.destroy();
      ended(conn, failure, closedBy, { up: upSocket?.bytesWritten ?? 0, down: upSocket?.bytesRead ?? 0 });
    });
    up.on("timeout", () =>
      up.destroy(new Refused("egress_timeout", `${target}:${port} did not answer in time`)),
    );
    up.on("response", (upRes) => {
      up.setTimeout(0);
      res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.headers));
      upRes.pipe(res);
    });
    up.on("error", (err) => {
      failure =
        err instanceof Refused
          ? err
          : new Refused("egress_connect_failed", `${target}:${port} refused or reset the connection`);
      answerRefusal(res, failure);
    });
    req.pipe(up);
  }

  const server = createServer();
  const interceptServer = createServer(onInterceptedRequest);
  // A bug in a handler costs that connection, never the process.
  server.on("connect", (req, socket, head) =>
    onConnect(req, socket as Socket, head).catch(() => socket.destroy()),
  );
  server.on("request", (req, res) => onRequest(req, res).catch(() => res.destroy()));
  server.on("clientError", (_err, socket) => socket.destroy());

  /** Closes `conn` if its source's current sandbox or policy no longer allows it; true if closed. */
  async function recheck(conn: Conn): Promise<boolean> {
    // A lookup that fails closes the connection: an unknown source has no policy.
    const now = await Promise.resolve(opts.lookup(conn.source)).catch(() => undefined);
    let by: EgressCut | undefined;
    if (!now || now.tenant !== conn.tenant || now.sandbox !== conn.sandbox) by = "identity";
    else if (!stillAllowed(now.policy, conn)) by = "policy";
    if (by) conn.close(by);
    else if (now) conn.egress = now;
    return by !== undefined;
  }

  /**
   * A connection admitted before a revalidate began but tracked after it ended would escape it:
   * `generation` counts revalidations, and such a connection is checked again as it is tracked.
   */
  function trackChecked(c: Omit<Conn, "key" | "started">, admittedAt: number): Conn | Refused {
    // The cap is checked here, with no await before the connection is counted: concurrent
    // connections of one sandbox cannot all pass it while they resolve.
    if (countOf(`${c.tenant}/${c.sandbox}`) >= maxPerSandbox)
      return Object.assign(
        new Refused("egress_connection_limit", `this sandbox already has ${maxPerSandbox} open connections`),
        { egress: c.egress },
      );
    if (overBudget(`${c.tenant}/${c.sandbox}`))
      return Object.assign(
        new Refused("egress_byte_limit", `this sandbox has used its ${maxBytes} bytes of egress`),
        { egress: c.egress },
      );
    const conn = track(c);
    if (admittedAt !== generation) void recheck(conn);
    return conn;
  }

  async function revalidate(): Promise<number> {
    generation++;
    let closed = 0;
    for (const conn of [...open]) if (await recheck(conn)) closed++;
    return closed;
  }

  const stillAllowed = (p: EgressPolicy, c: Conn) =>
    decide(p, c.host, c.port).allowed && decideAddress(p, c.address, c.port).allowed;

  return {
    server,
    listen: (port, host) =>
      new Promise((resolveListen, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolveListen(server.address() as AddressInfo);
        });
      }),
    revalidate,
    openConnections: () =>
      [...open].map(({ tenant, sandbox, host, port, address, mode }) => ({
        tenant,
        sandbox,
        host,
        port,
        address,
        mode,
      })),
    forget: (tenant, sandbox) => void spent.delete(`${tenant}/${sandbox}`),
    close: async () => {
      clearInterval(sweep);
      for (const c of [...open]) c.close("shutdown");
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
