import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { TLSSocket } from "node:tls";
import { Exec, type V1Status } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { makeKubeletPki } from "../../devcluster/pki.ts";
import { startTestApiServer, type TestApiServer, testKubeletTls } from "../support/devcluster.ts";

const NS = "exec-test";

interface Seen {
  url: string;
  /** The subject of the client certificate the API server presented. */
  clientCN: string | undefined;
  protocol: string;
  closeCode?: number;
}

/**
 * A stand-in for the kubelet's exec endpoint: HTTPS with the test PKI's kubelet certificate,
 * client certificates required (as a real kubelet does); enough protocol to check the proxy.
 */
async function startFakeKubelet(): Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const tls = await testKubeletTls();
  const https = createHttpsServer({
    cert: tls.cert,
    key: tls.key,
    ca: tls.clientCA,
    requestCert: true,
    rejectUnauthorized: true,
  });
  https.on("tlsClientError", () => {});
  await new Promise<void>((r) => https.listen(0, "127.0.0.1", () => r()));
  const wss = new WebSocketServer({
    server: https,
    handleProtocols: (protocols) =>
      protocols.has("v5.channel.k8s.io")
        ? "v5.channel.k8s.io"
        : protocols.has("v4.channel.k8s.io")
          ? "v4.channel.k8s.io"
          : false,
  });
  wss.on("connection", (ws, req) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    const entry: Seen = {
      url: req.url ?? "",
      clientCN: String(peer?.subject?.CN ?? ""),
      protocol: ws.protocol,
    };
    seen.push(entry);
    const q = new URL(req.url ?? "/", "http://x").searchParams;
    const cmd = q.getAll("command").join(" ");
    ws.on("close", (code) => {
      entry.closeCode = code;
    });
    const status = (s: object) => ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(s))]));
    if (cmd.includes("die")) {
      ws.close(4001, "kubelet says bye");
      return;
    }
    if (cmd.includes("big")) {
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      chunk[0] = 1;
      for (let i = 0; i < 160; i++) ws.send(chunk);
      status({ metadata: {}, status: "Success" });
      ws.close(1000);
      return;
    }
    ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(`ran: ${cmd}\n`)]));
    ws.send(Buffer.concat([Buffer.from([2]), Buffer.from("to stderr\n")]));
    ws.on("message", (data: RawData) => {
      const b = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      if (b[0] === 0) ws.send(Buffer.concat([Buffer.from([1]), b.subarray(1)]));
      if (b[0] === 255) {
        status({
          metadata: {},
          status: "Failure",
          reason: "NonZeroExitCode",
          details: { causes: [{ reason: "ExitCode", message: "3" }] },
        });
        ws.close(1000);
      }
    });
  });
  return {
    port: (https.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        https.closeAllConnections();
        https.close(() => r());
      }),
  };
}

let s: TestApiServer;
let kubelet: Awaited<ReturnType<typeof startFakeKubelet>>;

beforeAll(async () => {
  kubelet = await startFakeKubelet();
  s = await startTestApiServer({ namespaces: [NS] });
  await s.raw("POST", "/api/v1/nodes", {
    metadata: { name: "fake-node" },
    status: {
      addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
      daemonEndpoints: { kubeletEndpoint: { Port: kubelet.port } },
    },
  });
  for (const name of ["bound", "unbound"]) {
    const r = await s.raw("POST", `/api/v1/namespaces/${NS}/pods`, {
      metadata: { name },
      spec: {
        containers: [
          { name: "first", image: "i" },
          { name: "second", image: "i" },
        ],
      },
    });
    expect(r.status).toBe(201);
  }
  await s.raw("POST", `/api/v1/namespaces/${NS}/pods/bound/binding`, {
    metadata: { name: "bound" },
    target: { kind: "Node", name: "fake-node" },
  });
});
afterAll(async () => {
  await s?.close();
  await kubelet?.close();
});

function execUrl(pod: string, query: string): string {
  return `${s.url.replace("http", "ws")}/api/v1/namespaces/${NS}/pods/${pod}/exec?${query}`;
}

interface Dialed {
  ws?: WebSocket;
  status?: number;
  body?: string;
  /** Frames received so far (collected from the first one: they can arrive with the handshake). */
  frames: Buffer[];
  closed: Promise<number>;
}

/** Opens a raw exec WebSocket; resolves with the handshake outcome. */
function dial(
  url: string,
  token: string | undefined,
  protocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"],
) {
  return new Promise<Dialed>((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const frames: Buffer[] = [];
    const closed = new Promise<number>((r) => ws.on("close", (code) => r(code)));
    ws.on("message", (d: RawData) => frames.push(Buffer.isBuffer(d) ? d : Buffer.from(d as ArrayBuffer)));
    const t = setTimeout(() => reject(new Error("dial timeout")), 5_000);
    ws.on("open", () => {
      clearTimeout(t);
      resolve({ ws, frames, closed });
    });
    ws.on("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        clearTimeout(t);
        resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString(), frames, closed });
      });
    });
    ws.on("error", () => {});
  });
}

describe("pods/exec WebSocket proxy", () => {
  it("client-node Exec: proxied to the kubelet over TLS with a client certificate, v5 chosen, frames both ways", async () => {
    const exec = new Exec(s.kubeConfig());
    let out = "";
    let err = "";
    const stdout = new Writable({
      write: (c, _e, cb) => {
        out += String(c);
        cb();
      },
    });
    const stderr = new Writable({
      write: (c, _e, cb) => {
        err += String(c);
        cb();
      },
    });
    const { PassThrough } = await import("node:stream");
    const stdin = new PassThrough();
    const status = new Promise<V1Status>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no status")), 5_000);
      exec
        .exec(NS, "bound", "second", ["sh", "-c", "echo hi"], stdout, stderr, stdin, false, (st) => {
          clearTimeout(t);
          resolve(st);
        })
        .catch(reject);
    });
    stdin.write("echo-me\n");
    setTimeout(() => stdin.end(), 100);
    const st = await status;
    expect(st.status).toBe("Failure");
    expect(st.details?.causes?.[0]?.message).toBe("3");
    expect(out).toContain("ran: sh -c echo hi");
    expect(out).toContain("echo-me");
    expect(err).toBe("to stderr\n");
    const seen = kubelet.seen.at(-1);
    // Dialled as kube-apiserver dials a kubelet: TLS with its kubelet-client certificate, and the
    // stream flags under the names a kubelet reads.
    expect(seen?.clientCN).toBe("kube-apiserver-kubelet-client");
    expect(seen?.protocol).toBe("v5.channel.k8s.io");
    expect(seen?.url.startsWith(`/exec/${NS}/bound/second?`)).toBe(true);
    const q = new URL(seen?.url ?? "", "http://x").searchParams;
    expect(q.getAll("command")).toEqual(["sh", "-c", "echo hi"]);
    expect([q.get("input"), q.get("output"), q.get("error")]).toEqual(["1", "1", "1"]);
    expect(q.has("stdin") || q.has("stdout") || q.has("stderr")).toBe(false);
  });

  it("container omitted → the pod's first container; the subprotocol the kubelet picked is used", async () => {
    const d = await dial(execUrl("bound", "command=true&stdout=true"), s.token, [
      "v4.channel.k8s.io",
      "channel.k8s.io",
    ]);
    expect(d.ws?.protocol).toBe("v4.channel.k8s.io");
    d.ws?.close(1000);
    expect(kubelet.seen.at(-1)?.url.startsWith(`/exec/${NS}/bound/first?`)).toBe(true);
  });

  it("the kubelet's close code reaches the client", async () => {
    const d = await dial(execUrl("bound", "command=die&stdout=true"), s.token);
    expect(await d.closed).toBe(4001);
  });

  it("the client's close reaches the kubelet", async () => {
    const d = await dial(execUrl("bound", "command=cat&stdin=true&stdout=true"), s.token);
    const ws = d.ws as WebSocket;
    const until = Date.now() + 3_000;
    while (d.frames.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(d.frames.length).toBeGreaterThan(0);
    const entry = kubelet.seen.at(-1);
    ws.close(1000);
    const deadline = Date.now() + 3_000;
    while (entry?.closeCode === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    expect(entry?.closeCode).toBe(1000);
  });

  it("10 MiB of output arrives intact and in order", async () => {
    const d = await dial(execUrl("bound", "command=big&stdout=true"), s.token);
    const code = await d.closed;
    const r = { frames: d.frames, code };
    const stdoutBytes = r.frames.filter((f) => f[0] === 1).reduce((n, f) => n + f.length - 1, 0);
    expect(stdoutBytes).toBe(160 * (64 * 1024 - 1));
    expect(r.frames.at(-1)?.[0]).toBe(3);
    expect(r.code).toBe(1000);
  });

  it("errors before the handshake are Status bodies: 404 pod, 400 no host, 400 bad container, 401", async () => {
    const missing = await dial(execUrl("ghost", "command=true"), s.token);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body ?? "{}")).toMatchObject({
      kind: "Status",
      reason: "NotFound",
      message: 'pods "ghost" not found',
    });
    const unbound = await dial(execUrl("unbound", "command=true"), s.token);
    expect(unbound.status).toBe(400);
    expect(JSON.parse(unbound.body ?? "{}").message).toBe("pod unbound does not have a host assigned");
    const badc = await dial(execUrl("bound", "command=true&container=nope"), s.token);
    expect(badc.status).toBe(400);
    expect(JSON.parse(badc.body ?? "{}").message).toBe("container nope is not valid for pod bound");
    const noauth = await dial(execUrl("bound", "command=true"), undefined);
    expect(noauth.status).toBe(401);
  });

  it("an API server whose client certificate the kubelet does not trust cannot exec (TLS refused)", async () => {
    const pkiDir = await mkdtemp(join(tmpdir(), "foreign-pki-"));
    const foreign = await makeKubeletPki(pkiDir, "fake-node");
    // Trusts the kubelet, but presents a client certificate of another CA.
    const real = await testKubeletTls();
    const other = await startTestApiServer({
      namespaces: [NS],
      kubeletClient: { cert: foreign.apiClientCert, key: foreign.apiClientKey, ca: real.clientCA },
    });
    try {
      await other.raw("POST", "/api/v1/nodes", {
        metadata: { name: "fake-node" },
        status: {
          addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
          daemonEndpoints: { kubeletEndpoint: { Port: kubelet.port } },
        },
      });
      await other.raw("POST", `/api/v1/namespaces/${NS}/pods`, {
        metadata: { name: "p" },
        spec: { nodeName: "fake-node", containers: [{ name: "c", image: "i" }] },
      });
      const url = `${other.url.replace("http", "ws")}/api/v1/namespaces/${NS}/pods/p/exec?command=true`;
      const d = await dial(url, other.token);
      expect(d.status).toBe(500);
      expect(JSON.parse(d.body ?? "{}").message).toMatch(/error dialing backend: /);
    } finally {
      await other.close();
      await rm(pkiDir, { recursive: true, force: true });
    }
  });

  it("a plain GET without upgrade → 400; exec is audited as get + create on pods/exec", async () => {
    const r = await s.raw("GET", `/api/v1/namespaces/${NS}/pods/bound/exec?command=true`);
    expect(r.status).toBe(400);
    s.audit.length = 0;
    const d = await dial(execUrl("bound", "command=true"), s.token);
    d.ws?.close(1000);
    expect(s.audit.map((a) => `${a.verb} ${a.resource}/${a.subresource} ${a.code}`)).toEqual([
      "get pods/exec 101",
      "create pods/exec 101",
    ]);
  });
});
