/**
 * The one exec-server client never guesses an address: a target without a pod IP is an error,
 * not a request to localhost (Node's http.request turns host "" into localhost).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer as createTcpServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecServerClient } from "../../cluster-agent/exec/exec-server-client.ts";
import { EXEC_SERVER_PATHS } from "../../cluster-agent/sandbox-server/protocol.ts";

/** Stands where "localhost" would lead: any request reaching it is the bug. */
const reached: string[] = [];
const local = createServer((req, res) => {
  reached.push(`${req.method} ${req.url}`);
  res.writeHead(200, { "content-type": "application/json" }).end("{}");
});

beforeAll(() => new Promise<void>((resolve) => local.listen(0, resolve)));
afterAll(() => new Promise<void>((resolve) => local.close(() => resolve())));

describe("ExecServerClient with an empty pod IP", () => {
  it("answers sandbox_failed and sends nothing to localhost", async () => {
    const client = new ExecServerClient({ poolToken: "t", port: (local.address() as AddressInfo).port });
    const r = await client.call(
      { namespace: "ns", pod: "p0", podIP: "", fence: 1 },
      { method: "GET", path: EXEC_SERVER_PATHS.health, headTimeoutMs: 2_000 },
    );
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("sandbox_failed");
      expect(r.error.message).toMatch(/no IP/);
    }
    expect(reached).toEqual([]);
  });
});

describe("ExecServerClient when the pod cannot be reached", () => {
  it("answers in our words; the socket error (the pod's address) is only the cause", async () => {
    // A port that was just free: nothing listens there.
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const client = new ExecServerClient({ poolToken: "t", port });
    const r = await client.call(
      { namespace: "ns", pod: "p0", podIP: "127.0.0.1", fence: 1 },
      { method: "GET", path: EXEC_SERVER_PATHS.health, headTimeoutMs: 5_000 },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("sandbox_failed");
    expect(r.error.message).not.toContain(String(port));
    expect(String((r.error.cause as Error).message)).toContain(`127.0.0.1:${port}`);
  });
});
