import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type ApiError,
  backoffMs,
  PoolConnection,
  type StreamStatus,
  statusLine,
} from "../../edge/dashboard/client/connection.ts";
import { waitFor } from "../support/wait-for.ts";

// The page's connection module against a real HTTP server and Node's real fetch: discovery,
// one stream per region parsed by the one SSE codec, reconnects, auth failures, idle watchdog.

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let server: Server;
let base = "";
let routes: Record<string, Handler> = {};
const seen: Array<{ url: string; authorization: string | undefined }> = [];
const open = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", authorization: req.headers.authorization });
    const h = routes[req.url ?? ""];
    if (!h) {
      res.writeHead(404).end();
      return;
    }
    h(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  for (const res of open) res.destroy();
  open.clear();
  routes = {};
  seen.length = 0;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const json =
  (status: number, body: unknown): Handler =>
  (_req, res) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
const envelope = (code: string, message = code) => ({ error: { code, message, requestId: "r" } });

/** An SSE response that stays open; `write` sends raw text (chunks exactly as given). */
function sse(): Handler & { write(text: string): void; clients(): number } {
  const clients = new Set<ServerResponse>();
  const h = (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.flushHeaders();
    clients.add(res);
    open.add(res);
    res.on("close", () => clients.delete(res));
  };
  return Object.assign(h, {
    write(text: string) {
      for (const c of clients) c.write(text);
    },
    clients: () => clients.size,
  });
}

function connect(over: { idleTimeoutMs?: number; maxBackoffMs?: number } = {}) {
  const messages: Array<{ event: string; data: string }> = [];
  const auth: Array<{ status: number; error: ApiError }> = [];
  const c = new PoolConnection(
    { eventsPath: `${base}/v1/events`, poolPath: `${base}/v1/pool`, maxBackoffMs: 200, ...over },
    {
      message: (m) => {
        messages.push({ event: m.event, data: m.data });
        return m.event === "snapshot" || m.event === "pool";
      },
      changed: () => {},
      authFailed: (status, error) => auth.push({ status, error }),
    },
  );
  return { c, messages, auth };
}

const snapshotOf = (region: string) => ({ region, agentId: "a", at: "2026-01-01T00:00:00Z" });

describe("the dashboard's SSE connection", () => {
  it("names the regions from /v1/pool, applies their snapshots, opens one stream each with the token", async () => {
    const local = sse();
    routes = {
      "/v1/pool": json(200, {
        requestId: "r",
        regions: [
          { region: "local", pool: snapshotOf("local") },
          { region: "us", error: { code: "no_agent", message: "no agent", requestId: "r" } },
        ],
      }),
      "/v1/events?region=local": local,
      "/v1/events?region=us": json(503, envelope("no_agent")),
    };
    const { c, messages } = connect();
    await c.start("tok");
    expect(messages[0]).toEqual({ event: "snapshot", data: JSON.stringify(snapshotOf("local")) });
    expect(c.regionErrors.get("us")).toBe("no agent (no_agent)");
    await waitFor("the local stream", () => local.clients() > 0);
    local.write('event: pool\ndata: {"type":"x"}\n\n');
    await waitFor("the local stream live", () => c.streamOf("local")?.state === "live");
    await waitFor("us reconnecting", () => c.streamOf("us")?.state === "reconnecting");
    expect(c.streamOf("us")?.reason).toBe("Edge answered 503 (no_agent)");
    const urls = seen.map((s) => s.url);
    expect(urls).toContain("/v1/events?region=local");
    expect(urls).toContain("/v1/events?region=us");
    expect(seen.every((s) => s.authorization === "Bearer tok")).toBe(true);
    // The region comes up by itself: its retry finds an agent, and its error is cleared.
    const us = sse();
    routes["/v1/events?region=us"] = us;
    await waitFor("us stream", () => us.clients() > 0);
    us.write(`event: snapshot\ndata: ${JSON.stringify(snapshotOf("us"))}\n\n`);
    await waitFor("us live", () => c.streamOf("us")?.state === "live");
    expect(c.regionErrors.has("us")).toBe(false);
    expect(statusLine(c.streams, Date.now())).toEqual({ kind: "live", text: "Live · 2 regions" });
    c.stop();
  });

  it("parses named events, ignores comments, joins multi-line data, across chunks and CRLF / CR line ends", async () => {
    const stream = sse();
    routes = { "/v1/events": stream };
    const { c, messages } = connect();
    await c.start("tok");
    await waitFor("the stream", () => stream.clients() > 0);
    const text =
      ': ping\n\nevent: snapshot\ndata: {"a":1}\n\nevent: pool\ndata: line1\ndata: line2\nid: 7\n\n' +
      'event: pool\r\ndata: {"x":"y"}\r\n\r\nevent: pool\rdata: 2\r\rdata: 3\n\n';
    // Every chunk boundary a network may cut at, CRs split from their LFs included.
    for (let i = 0; i < text.length; i += 7) stream.write(text.slice(i, i + 7));
    await waitFor("five events", () => messages.length >= 5);
    expect(messages).toEqual([
      { event: "snapshot", data: '{"a":1}' },
      { event: "pool", data: "line1\nline2" },
      { event: "pool", data: '{"x":"y"}' },
      { event: "pool", data: "2" },
      { event: "message", data: "3" },
    ]);
    c.stop();
  });

  it("without /v1/pool, one stream to /v1/events is used", async () => {
    const stream = sse();
    routes = { "/v1/events": stream };
    const { c } = connect();
    await c.start("tok");
    expect(c.streams.map((s) => s.key)).toEqual([""]);
    await waitFor("the stream", () => stream.clients() > 0);
    stream.write('event: pool\ndata: {"type":"x"}\n\n');
    await waitFor("live", () => c.streams[0]?.state === "live");
    // The default stream carries every region it sends.
    expect(c.streamOf("eu")?.state).toBe("live");
    c.stop();
  });

  it("401/403 stop everything and report the edge's code; nothing retries", async () => {
    routes = { "/v1/pool": json(401, envelope("token_expired", "expired")) };
    const a = connect();
    await a.c.start("old");
    expect(a.auth).toEqual([{ status: 401, error: { code: "token_expired", message: "expired" } }]);
    expect(a.c.streams).toEqual([]);

    routes = { "/v1/events": json(403, envelope("insufficient_scope")) };
    const b = connect();
    await b.c.start("viewer");
    await waitFor("the auth failure", () => b.auth.length > 0);
    expect(b.auth[0]?.status).toBe(403);
    expect(b.c.streams).toEqual([]);
    const calls = seen.length;
    // No retry is scheduled: a second start is the only way to call again.
    await b.c.start("viewer");
    await waitFor("the second failure", () => b.auth.length > 1);
    expect(seen.length).toBe(calls + 2);
  });

  it("a stream that ends or goes quiet reconnects; comments (pings) keep it alive", async () => {
    const stream = sse();
    routes = { "/v1/events": stream };
    const { c } = connect({ idleTimeoutMs: 3_000 });
    await c.start("tok");
    await waitFor("the stream", () => stream.clients() > 0);
    stream.write('event: pool\ndata: {"type":"x"}\n\n');
    await waitFor("live", () => c.streams[0]?.state === "live");
    const opened = seen.filter((s) => s.url === "/v1/events").length;
    // Pings (every 100 ms: a 30× margin) for longer than the idle timeout: the same connection stays.
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      stream.write(": ping\n\n");
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen.filter((s) => s.url === "/v1/events").length).toBe(opened);
    expect(c.streams[0]?.state).toBe("live");
    // Silence: the watchdog aborts and the stream is opened again.
    await waitFor("a reconnect", () => seen.filter((s) => s.url === "/v1/events").length > opened, 10_000);
    c.stop();
  });
});

describe("status line and backoff", () => {
  const st = (key: string, state: StreamStatus["state"], reason = "", until = 0): StreamStatus => ({
    key,
    state,
    reason,
    until,
  });

  it("is live only when every stream is; names the region that is down when there are several", () => {
    expect(statusLine([], 0)).toBeNull();
    expect(statusLine([st("", "live")], 0)).toEqual({ kind: "live", text: "Live" });
    expect(statusLine([st("eu", "live"), st("us", "connected")], 0)).toEqual({
      kind: "connecting",
      text: "us: Waiting for the snapshot…",
    });
    expect(statusLine([st("eu", "live"), st("us", "reconnecting", "Edge unreachable", 2_100)], 0)).toEqual({
      kind: "reconnecting",
      text: "us: Edge unreachable — reconnecting in 3 s…",
    });
    expect(statusLine([st("", "connecting")], 0)).toEqual({ kind: "connecting", text: "Connecting…" });
  });

  it("backs off exponentially with jitter, capped", () => {
    expect(backoffMs(0, 15_000, 0)).toBe(250);
    expect(backoffMs(0, 15_000, 1)).toBe(500);
    expect(backoffMs(3, 15_000, 1)).toBe(4_000);
    expect(backoffMs(10, 15_000, 1)).toBe(15_000);
  });
});
