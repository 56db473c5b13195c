import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { main as cli } from "../../sdk/typescript/src/cli.ts";
import { SandboxApiError, SandboxClient } from "../../sdk/typescript/src/index.ts";
import type { ExecResult, PortLink, ProcessInfo, ProcessOutput, Sandbox } from "../../shared/api.ts";
import { linkFetch } from "../support/link-fetch.ts";
import { edgeApi, errorCodeOf, jsonOf, runProcess, suiteStack, waitFor } from "./stack-helpers.ts";

// Issue 27 item 3 through the whole stack: the edge in workerd, a real agent on the tunnel, devcluster
// runc pods running the exec server. A python http.server started as a sandbox process is reached
// through expiring links at <link id>.localhost: edge → tunnel → agent → the pod's exec server →
// 127.0.0.1:8000 in the pod.

const theStack = suiteStack("stack-port-links-", {
  regions: ["eu-1"],
  agentsPerRegion: 1,
  poolSize: 3,
  edgeVars: { TENANT_QUOTA_BURST: "400", TENANT_QUOTA_PER_MINUTE: "6000" },
});
const api = edgeApi(theStack);

const createSandbox = async (token?: string): Promise<Sandbox> =>
  jsonOf<Sandbox>(
    await api("/v1/sandboxes", { method: "POST", body: "{}", ...(token ? { token } : {}) }),
    201,
  );

const exec = async (id: string, command: string): Promise<ExecResult> =>
  jsonOf<ExecResult>(
    await api(`/v1/sandboxes/${id}/exec`, { method: "POST", body: JSON.stringify({ command }) }),
  );

const link = async (id: string, port: number, body: object = {}): Promise<PortLink> =>
  jsonOf<PortLink>(
    await api(`/v1/sandboxes/${id}/ports/${port}/links`, { method: "POST", body: JSON.stringify(body) }),
    201,
  );

/** Start a python script of the workspace as a sandbox process and wait for `line` in its output. */
async function startServer(id: string, script: string, line: string): Promise<void> {
  const server = await jsonOf<ProcessInfo>(
    await api(`/v1/sandboxes/${id}/processes`, {
      method: "POST",
      body: JSON.stringify({ argv: ["python3", "-u", script] }),
    }),
    201,
  );
  await waitFor(
    `${script}'s "${line}"`,
    async () => {
      const out = await jsonOf<ProcessOutput>(
        await api(`/v1/sandboxes/${id}/processes/${server.pid}/output?since=0&waitMs=2000`),
      );
      return Buffer.from(out.data, "base64").toString().includes(line) || undefined;
    },
    30_000,
  );
}

/** The link's token (its URL's query) and the URL of `path` on the link's host without it. */
function parts(l: PortLink, path = "/"): { token: string; url: string } {
  const u = new URL(l.url);
  return { token: u.searchParams.get("pi_link") ?? "", url: `${u.protocol}//${u.host}${path}` };
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

// The app: python's http.server for files, plus an echo of a POST body's length and hash (a request
// body streamed through the link).
const SERVER_PY = `
import hashlib, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        h = hashlib.sha256(); left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk: break
            h.update(chunk); left -= len(chunk)
        out = ("%d %s %s" % (n - left, h.hexdigest(), self.headers.get("x-app-header"))).encode()
        self.send_response(200); self.send_header("content-length", str(len(out)))
        self.send_header("set-cookie", "app=1; Domain=localhost; Path=/")
        self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
s = http.server.ThreadingHTTPServer(("127.0.0.1", 8000), H)
print("listening on 8000", flush=True)
s.serve_forever()
`;

// A WebSocket echo server by hand (python has none in its standard library): the handshake, then
// each text or binary message back with "echo:" in front; a close is answered and ends it.
const WS_PY = `
import base64, hashlib, socket, struct, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def exact(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def handle(c):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        x = c.recv(4096)
        if not x: return
        data += x
    hdrs = {}
    for line in data.split(b"\\r\\n\\r\\n")[0].decode().split("\\r\\n")[1:]:
        k, v = line.split(":", 1); hdrs[k.strip().lower()] = v.strip()
    acc = base64.b64encode(hashlib.sha1((hdrs["sec-websocket-key"] + GUID).encode()).digest()).decode()
    proto = hdrs.get("sec-websocket-protocol", "").split(",")[0].strip()
    resp = "HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: %s\\r\\n" % acc
    if proto: resp += "Sec-WebSocket-Protocol: %s\\r\\n" % proto
    c.sendall((resp + "\\r\\n").encode())
    try:
        while True:
            b1, b2 = exact(c, 2)
            op = b1 & 15; n = b2 & 127
            if n == 126: n = struct.unpack(">H", exact(c, 2))[0]
            elif n == 127: n = struct.unpack(">Q", exact(c, 8))[0]
            mask = exact(c, 4) if b2 & 128 else b"\\0\\0\\0\\0"
            payload = bytes(x ^ mask[i % 4] for i, x in enumerate(exact(c, n)))
            if op == 8:
                c.sendall(bytes([136, len(payload)]) + payload); c.close(); return
            if op == 9: op = 10
            if op in (1, 2): payload = b"echo:" + payload
            L = len(payload)
            hdr = bytes([128 | op]) + (bytes([L]) if L < 126 else bytes([126]) + struct.pack(">H", L) if L < 65536 else bytes([127]) + struct.pack(">Q", L))
            c.sendall(hdr + payload)
    except EOFError:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 8001)); s.listen()
print("ws listening on 8001", flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
`;

/** A WebSocket to a link URL from Node: `*.localhost` resolved to loopback, as curl and Chromium do. */
function linkSocket(url: string, protocols: string[] = [], headers: Record<string, string> = {}): WebSocket {
  return new WebSocket(url.replace(/^http/, "ws"), protocols, {
    headers,
    // Node asks for every address (`all`, for its family selection): one answer, loopback.
    lookup: (_host: string, o: { all?: boolean }, cb: (e: null, a: unknown, f?: number) => void) =>
      o.all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4),
  } as WebSocket.ClientOptions);
}

/** The answer to an upgrade that was refused: its status and error code. */
function refusal(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    ws.once("open", () => reject(new Error("the upgrade was accepted")));
    ws.once("error", () => undefined);
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d.toString();
      });
      res.on("end", () => {
        const code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? "";
        resolve([res.statusCode ?? 0, code]);
      });
    });
  });
}

const PAGE = "<!doctype html><title>hello from the sandbox</title><p>ünïcödé ✓</p>\n";
const BIG_BYTES = 12 * 1024 * 1024;

describe("port links through the edge", () => {
  let sb: Sandbox;
  let pub: PortLink;
  let bigSha: string;

  it("a link to a port nothing listens on yet answers 502 port_not_listening (retryable), not a hang", async () => {
    sb = await createSandbox();
    pub = await link(sb.id, 8000, { public: true, ttlSeconds: 600 });
    expect(pub.id).toMatch(/^pl-[a-z0-9]{20}$/);
    expect(pub).toMatchObject({ port: 8000, public: true });
    expect(new URL(pub.url).hostname).toBe(`${pub.id}.localhost`);
    expect(Date.parse(pub.expiresAt) - Date.now()).toBeGreaterThan(590_000);
    const res = await linkFetch(pub.url);
    expect(res.status).toBe(502);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await errorCodeOf(res)).toBe("port_not_listening");
  });

  it("serves the sandbox's python http.server through the link, bytes exact (a page, a streamed 12 MiB file, a POST body)", async () => {
    const w = await api(`/v1/sandboxes/${sb.id}/files/server.py`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: SERVER_PY,
    });
    expect(w.status).toBe(200);
    await api(`/v1/sandboxes/${sb.id}/files/index.html`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: PAGE,
    });
    const made = await exec(sb.id, `head -c ${BIG_BYTES} /dev/urandom > big.bin && sha256sum big.bin`);
    bigSha = made.stdout.split(" ")[0] ?? "";
    expect(bigSha).toMatch(/^[0-9a-f]{64}$/);
    // Its "listening" line in its output, then the link works.
    await startServer(sb.id, "server.py", "listening on 8000");
    const page = await linkFetch(pub.url);
    expect(page.status).toBe(200);
    expect(Buffer.from(await page.arrayBuffer()).toString("utf8")).toBe(PAGE);
    // The token from the query becomes a cookie of the link's host only, for the page's own requests.
    const cookie = page.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^pi_link=[^;]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax/);
    const { token, url } = parts(pub, "/big.bin");
    const big = await linkFetch(url, { headers: { cookie: cookie.split(";")[0] ?? "" } });
    expect(big.status).toBe(200);
    const bytes = new Uint8Array(await big.arrayBuffer());
    expect(bytes.byteLength).toBe(BIG_BYTES);
    expect(sha256(bytes)).toBe(bigSha);
    // A request body streams to the app (a program sends the token as a header); the app's
    // cookie loses its Domain (it would reach the edge and every other link).
    const upload = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 7) % 251);
    const posted = await linkFetch(parts(pub, "/echo").url, {
      method: "POST",
      headers: { "x-pi-link": token, "x-app-header": "kept", "content-length": String(upload.byteLength) },
      body: upload,
    });
    expect(`${posted.status} ${await posted.text()}`).toBe(`200 ${upload.byteLength} ${sha256(upload)} kept`);
    expect(posted.headers.get("set-cookie")).toBe("app=1; Path=/");
  });

  it("a private link needs the tenant's JWT: none → 401, tenant B's → 404, A's → 200 (the JWT never reaches the app)", async () => {
    const priv = await link(sb.id, 8000);
    expect(priv.public).toBe(false);
    const none = await linkFetch(priv.url);
    expect([none.status, await errorCodeOf(none)]).toEqual([401, "unauthenticated"]);
    const b = await linkFetch(priv.url, {
      headers: { authorization: `Bearer ${theStack().tokens.tenantB}` },
    });
    expect([b.status, await errorCodeOf(b)]).toEqual([404, "link_not_found"]);
    const a = await linkFetch(priv.url, {
      headers: { authorization: `Bearer ${theStack().tokens.tenantA}` },
    });
    expect(a.status).toBe(200);
    expect(await a.text()).toBe(PAGE);
  });

  it("forged, malformed and other-link tokens are 404 link_not_found, saying nothing about the target", async () => {
    const other = await link(sb.id, 8000, { public: true });
    const { token } = parts(pub);
    const [h, p, s] = token.split(".");
    const flipped = `${h}.${p}.${s?.startsWith("A") ? `B${s.slice(1)}` : `A${s?.slice(1)}`}`;
    // A's token on another link's host (another origin), a forged signature, garbage, no token.
    const cases: Array<[string, Record<string, string>]> = [
      [parts(other).url, { "x-pi-link": token }],
      [parts(pub).url, { "x-pi-link": flipped }],
      [parts(pub).url, { "x-pi-link": "not-a-token" }],
      [parts(pub).url, {}],
    ];
    const bodies = new Set<string>();
    for (const [url, headers] of cases) {
      const res = await linkFetch(url, { headers });
      expect(res.status).toBe(404);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("link_not_found");
      bodies.add(body.error.message);
    }
    expect(bodies.size).toBe(1);
  });

  it("lists the open links with their URLs; a revoked link is 404 at once and leaves the list", async () => {
    const l = await link(sb.id, 8000, { public: true });
    const listed = await jsonOf<{ links: PortLink[] }>(await api(`/v1/sandboxes/${sb.id}/ports/links`));
    const mine = listed.links.find((x) => x.id === l.id);
    expect(mine).toEqual(l);
    expect((await linkFetch(l.url)).status).toBe(200);
    const del = await api(`/v1/sandboxes/${sb.id}/ports/8000/links/${l.id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    const after = await linkFetch(l.url);
    expect([after.status, await errorCodeOf(after)]).toEqual([404, "link_not_found"]);
    const again = await api(`/v1/sandboxes/${sb.id}/ports/8000/links/${l.id}`, { method: "DELETE" });
    expect([again.status, await errorCodeOf(again)]).toEqual([404, "link_not_found"]);
    const relisted = await jsonOf<{ links: PortLink[] }>(await api(`/v1/sandboxes/${sb.id}/ports/links`));
    expect(relisted.links.map((x) => x.id)).not.toContain(l.id);
  });

  it("an expired link is 404 link_not_found", async () => {
    const l = await link(sb.id, 8000, { public: true, ttlSeconds: 10 });
    expect((await linkFetch(l.url)).status).toBe(200);
    await waitFor(
      "the link's expiry",
      async () => Date.now() > Date.parse(l.expiresAt) + 1000 || undefined,
      20_000,
    );
    const res = await linkFetch(l.url);
    expect([res.status, await errorCodeOf(res)]).toEqual([404, "link_not_found"]);
  });

  it("refuses ports outside 1-65535 and the exec server's own port; tenant B cannot link A's sandbox", async () => {
    for (const port of ["0", "65536", "99999", "x", "8080"]) {
      const res = await api(`/v1/sandboxes/${sb.id}/ports/${port}/links`, { method: "POST", body: "{}" });
      expect([port, res.status, await errorCodeOf(res)]).toEqual([port, 400, "port_not_allowed"]);
    }
    const b = theStack().tokens.tenantB;
    const calls: Array<[string, RequestInit]> = [
      [`/v1/sandboxes/${sb.id}/ports/8000/links`, { method: "POST", body: "{}" }],
      [`/v1/sandboxes/${sb.id}/ports/links`, {}],
      [`/v1/sandboxes/${sb.id}/ports/8000/links/${pub.id}`, { method: "DELETE" }],
    ];
    for (const [path, init] of calls) {
      const res = await api(path, { ...init, token: b });
      expect([path, res.status, await errorCodeOf(res)]).toEqual([path, 404, "sandbox_not_found"]);
    }
    // B's own sandbox, with A's link id in the path: nothing of A's.
    const mine = await createSandbox(b);
    try {
      const res = await api(`/v1/sandboxes/${mine.id}/ports/8000/links/${pub.id}`, {
        method: "DELETE",
        token: b,
      });
      expect([res.status, await errorCodeOf(res)]).toEqual([404, "link_not_found"]);
      // B's link to the same port number of B's sandbox: B's (empty) port, never A's page; A's
      // token on B's link host, and B's token on A's, are 404.
      const bLink = await jsonOf<PortLink>(
        await api(`/v1/sandboxes/${mine.id}/ports/8000/links`, {
          method: "POST",
          body: '{"public":true}',
          token: b,
        }),
        201,
      );
      const own = await linkFetch(bLink.url);
      expect([own.status, await errorCodeOf(own)]).toEqual([502, "port_not_listening"]);
      const aOnB = await linkFetch(parts(bLink).url, { headers: { "x-pi-link": parts(pub).token } });
      expect([aOnB.status, await errorCodeOf(aOnB)]).toEqual([404, "link_not_found"]);
      const bOnA = await linkFetch(parts(pub).url, { headers: { "x-pi-link": parts(bLink).token } });
      expect([bOnA.status, await errorCodeOf(bOnA)]).toEqual([404, "link_not_found"]);
    } finally {
      await api(`/v1/sandboxes/${mine.id}`, { method: "DELETE", token: b });
    }
  });

  it("a WebSocket through a link: text and binary both ways, the app's subprotocol, refusals before the upgrade", async () => {
    await api(`/v1/sandboxes/${sb.id}/files/ws.py`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: WS_PY,
    });
    const wsLink = await link(sb.id, 8001, { public: true });
    // Nothing listens yet: the upgrade is refused with the link's 502, no socket opens.
    expect(await refusal(linkSocket(wsLink.url))).toEqual([502, "port_not_listening"]);
    await startServer(sb.id, "ws.py", "ws listening on 8001");
    const ws = linkSocket(`${parts(wsLink, "/chat?room=1").url}&pi_link=${parts(wsLink).token}`, ["chat.v1"]);
    const received: Array<string | Buffer> = [];
    const next = () =>
      new Promise<string | Buffer>((resolve) => {
        ws.once("message", (data: Buffer, isBinary: boolean) => resolve(isBinary ? data : data.toString()));
      });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    expect(ws.protocol).toBe("chat.v1");
    let got = next();
    ws.send("héllo");
    received.push(await got);
    const bin = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
    got = next();
    ws.send(bin);
    received.push(await got);
    expect(received[0]).toBe("echo:héllo");
    expect(Buffer.compare(received[1] as Buffer, Buffer.concat([Buffer.from("echo:"), bin]))).toBe(0);
    const closed = new Promise<number>((resolve) => ws.once("close", (code: number) => resolve(code)));
    ws.close(1000, "bye");
    expect(await closed).toBe(1000);
    // A revoked link refuses the upgrade like any request.
    const del = await api(`/v1/sandboxes/${sb.id}/ports/8001/links/${wsLink.id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    expect(await refusal(linkSocket(wsLink.url))).toEqual([404, "link_not_found"]);
  });

  it("the TypeScript client: sandbox.ports.link(port, {ttlSeconds, public}), links(), revoke()", async () => {
    const client = new SandboxClient({ baseUrl: theStack().edgeUrl, token: theStack().tokens.tenantA });
    const s = await client.sandboxes.get(sb.id);
    const l = await s.ports.link(8000, { ttlSeconds: 120, public: true });
    expect(l).toMatchObject({ port: 8000, public: true });
    const page = await linkFetch(l.url);
    expect([page.status, await page.text()]).toEqual([200, PAGE]);
    expect((await s.ports.links()).map((x) => x.id)).toContain(l.id);
    await s.ports.revoke(l);
    expect((await linkFetch(l.url)).status).toBe(404);
    const refused = await s.ports.link(70000).catch((e: unknown) => e);
    expect(refused instanceof SandboxApiError && [refused.status, refused.code]).toEqual([
      400,
      "port_not_allowed",
    ]);
  });

  it("the CLI: pi-sandbox port open | ls | rm", async () => {
    let stdout = "";
    let stderr = "";
    const sink = (add: (s: string) => void) =>
      ({
        write: (s: string) => {
          add(s);
          return true;
        },
      }) as unknown as NodeJS.WritableStream;
    const io = {
      stdout: sink((s) => {
        stdout += s;
      }),
      stderr: sink((s) => {
        stderr += s;
      }),
      env: { PI_SANDBOX_URL: theStack().edgeUrl, PI_SANDBOX_TOKEN: theStack().tokens.tenantA },
      cwd: process.cwd(),
    };
    expect(await cli(["port", "open", sb.id, "8000", "--public", "--ttl", "120"], io), stderr).toBe(0);
    const url = stdout.trim();
    expect(url).toMatch(/^http:\/\/pl-[a-z0-9]{20}\.localhost:\d+\/\?pi_link=/);
    expect((await linkFetch(url)).status).toBe(200);
    const id = new URL(url).hostname.split(".")[0] ?? "";
    stdout = "";
    expect(await cli(["port", "ls", sb.id], io), stderr).toBe(0);
    expect(stdout).toContain(`${id}  8000  public`);
    expect(await cli(["port", "rm", sb.id, "8000", id], io), stderr).toBe(0);
    expect((await linkFetch(url)).status).toBe(404);
    expect(await cli(["port", "open", sb.id, "0"], io)).toBe(65);
  });

  it("the Python client: sb.ports.link / links / revoke (its own unittest class)", async () => {
    const root = fileURLToPath(new URL("../../sdk/python", import.meta.url));
    const r = await runProcess("python3", ["-m", "unittest", "-v", "tests.test_client.Ports"], {
      cwd: root,
      env: {
        PYTHONPATH: root,
        PYTHONDONTWRITEBYTECODE: "1",
        PI_SANDBOX_URL: theStack().edgeUrl,
        PI_SANDBOX_TOKEN: theStack().tokens.tenantA,
      },
      timeoutMs: 120_000,
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Ran 1 test/);
  });

  it("a link dies with its sandbox: after the delete it is 404 link_not_found, never another sandbox's page", async () => {
    expect((await linkFetch(pub.url)).status).toBe(200);
    const del = await api(`/v1/sandboxes/${sb.id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    const res = await linkFetch(pub.url);
    expect([res.status, await errorCodeOf(res)]).toEqual([404, "link_not_found"]);
  });
});
