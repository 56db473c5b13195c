/**
 * The one exec-server client never guesses an address: a target without a pod IP is an error,
 * not a request to localhost (Node's http.request turns host "" into localhost).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
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
