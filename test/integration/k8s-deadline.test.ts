import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClients } from "../../cluster-agent/k8s/client.ts";
import { deadline } from "../../cluster-agent/k8s/deadline.ts";
import { k8sFailure } from "../../cluster-agent/k8s/errors.ts";

// An API server that never answers: the only way a call ends is its own deadline.
let server: Server;
let url = "";
const closedRequests: string[] = [];

beforeAll(async () => {
  server = createServer((req: IncomingMessage) => {
    req.on("close", () => closedRequests.push(req.url ?? ""));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function clients() {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: url, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return makeClients(kc);
}

describe("client-node 2.x per-call deadline", () => {
  it("aborts the request itself (the server sees the connection go) and fails with code 0", async () => {
    const t0 = Date.now();
    const e = await clients()
      .coordination.readNamespacedLease({ name: "p-1", namespace: "ns" }, deadline(300))
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(e).toBeDefined();
    expect(k8sFailure(e).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    // The request is over on the wire, not just abandoned by a Promise.race.
    await expect
      .poll(() => closedRequests.some((u) => u.includes("/leases/p-1")), { timeout: 2000 })
      .toBe(true);
  });

  it("takes a fractional budget (e.g. a lease duration / 3) as a deadline, not as an error", async () => {
    // AbortSignal.timeout throws on a non-integer delay: the call must still reach the server.
    const e = await clients()
      .coordination.readNamespacedLease({ name: "p-2", namespace: "ns" }, deadline(1000 / 3))
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(k8sFailure(e).code).toBe(0);
    expect(String((e as Error).message)).not.toMatch(/out of range/);
    await expect
      .poll(() => closedRequests.some((u) => u.includes("/leases/p-2")), { timeout: 2000 })
      .toBe(true);
  });
});
