import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";

// A minimal API server that answers namespace reads and counts the TCP connections it accepts.
interface CountingServer {
  url: string;
  connections: number;
  open: number;
  server: Server;
}

async function countingServer(): Promise<CountingServer> {
  const s: CountingServer = { url: "", connections: 0, open: 0, server: createServer() };
  s.server.on("connection", (socket) => {
    s.connections++;
    s.open++;
    socket.on("close", () => s.open--);
  });
  s.server.on("request", (req, res) => {
    req.resume();
    const name = (req.url ?? "").split("?")[0]?.split("/").pop() ?? "";
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name } }));
  });
  await new Promise<void>((r) => s.server.listen(0, "127.0.0.1", r));
  s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
  return s;
}

function kubeConfigFor(server: string): KubeConfig {
  const kc = new KubeConfig();
  // skipTLSVerify is a TLS setting as a CA or a client certificate is: it is what makes client-node
  // build its own dispatcher per call.
  kc.loadFromOptions({
    clusters: [{ name: "c", server, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

let a: CountingServer;
beforeAll(async () => {
  a = await countingServer();
});
afterAll(async () => {
  a.server.closeAllConnections();
  await new Promise((r) => a.server.close(r));
});

describe("API connections are reused", () => {
  it("client-node alone opens a new connection for every call (why reuse-connections.ts exists)", async () => {
    const before = a.connections;
    const core = kubeConfigFor(a.url).makeApiClient(CoreV1Api);
    for (let i = 0; i < 10; i++) await core.readNamespace({ name: `plain-${i}` });
    // When this fails, client-node pools connections itself and the workaround can go.
    expect(a.connections - before).toBe(10);
  });

  it("through makeClients, sequential and concurrent calls reuse their kept-alive connections", async () => {
    const before = a.connections;
    const { core } = makeClients(kubeConfigFor(a.url));
    for (let i = 0; i < 20; i++) {
      const ns = await core.readNamespace({ name: `seq-${i}` });
      expect(ns.metadata?.name).toBe(`seq-${i}`);
    }
    // undici may open a second connection while the first answer is still being read; after that
    // the calls take turns on the kept-alive ones.
    expect(a.connections - before).toBeLessThanOrEqual(2);
    const batch = (tag: string) =>
      Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          core.readNamespace({ name: `${tag}-${i}` }).then((n) => n.metadata?.name),
        ),
      );
    expect(await batch("par")).toEqual(Array.from({ length: 10 }, (_, i) => `par-${i}`));
    const afterFirstBatch = a.connections;
    // Ten at once need up to ten connections; the next ten at once find them idle and reuse them.
    expect(await batch("again")).toEqual(Array.from({ length: 10 }, (_, i) => `again-${i}`));
    expect(a.connections - afterFirstBatch).toBeLessThanOrEqual(1);
  });

  it("changed connection settings get a new dispatcher, and the replaced one is closed", async () => {
    const kc = new KubeConfig();
    // Two contexts for one server that differ only in a TLS setting, as a rotated CA or client
    // certificate would (those are re-read from their files on every call).
    kc.loadFromOptions({
      clusters: [
        { name: "c0", server: a.url, skipTLSVerify: true },
        { name: "c1", server: a.url, skipTLSVerify: true, tlsServerName: "rotated" },
      ],
      users: [{ name: "u", token: "t" }],
      contexts: [
        { name: "x0", cluster: "c0", user: "u" },
        { name: "x1", cluster: "c1", user: "u" },
      ],
      currentContext: "x0",
    });
    const { core } = makeClients(kc);
    const before = a.connections;
    const openBefore = a.open;
    for (let i = 0; i < 5; i++) await core.readNamespace({ name: `old-settings-${i}` });
    const onOld = a.connections - before;
    expect(onOld).toBeLessThanOrEqual(2);
    kc.setCurrentContext("x1");
    for (let i = 0; i < 5; i++) await core.readNamespace({ name: `new-settings-${i}` });
    const onNew = a.connections - before - onOld;
    expect(onNew).toBeGreaterThanOrEqual(1);
    expect(onNew).toBeLessThanOrEqual(2);
    // The old dispatcher was closed once idle: only the new connections are left open.
    await expect.poll(() => a.open - openBefore, { timeout: 5_000, interval: 20 }).toBe(onNew);
  });
});
