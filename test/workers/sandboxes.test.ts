import { env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import {
  auth,
  BASE,
  closeAgents,
  connectAgent,
  expectError,
  type TestAgent,
  tenantToken,
  waitForAgents,
} from "./support.ts";

// The edge side of /v1/sandboxes in workerd: the id names region and cluster, and the TunnelDO
// sends a sandbox's requests only to agents of that cluster.

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1"]));

const RAND = "abcdefghij0123456789";
const sandbox = (id: string) => ({
  id,
  region: "eu-1",
  pod: "sandbox-x",
  state: "ready",
  createdAt: "2026-12-01T00:00:00.000Z",
  lastActivityAt: "2026-12-01T00:00:00.000Z",
  expiresAt: "2026-12-01T00:05:00.000Z",
  idleTimeoutSeconds: 300,
  maxLifetimeSeconds: 3600,
});

async function clusterAgent(cluster: string): Promise<TestAgent> {
  const a = await connectAgent(
    "eu-1",
    async (r, ag) => {
      const url = new URL(r.request.url);
      if (url.pathname.endsWith("/files/data/x.bin")) {
        await ag.respond(
          r.frame.id,
          new Response(
            r.body.byteLength > 0
              ? JSON.stringify({ path: "/workspace/data/x.bin", size: r.body.byteLength })
              : new Uint8Array([7, 8, 9]),
            {
              headers:
                r.body.byteLength > 0
                  ? { "content-type": "application/json" }
                  : { "x-sandbox-file-size": "3" },
            },
          ),
        );
        return;
      }
      await ag.respond(
        r.frame.id,
        Response.json({ ...sandbox(`sb.eu-1.${cluster}.${RAND}`), served: ag.agentId }),
      );
    },
    `agent-${cluster}`,
    cluster,
  );
  agents.push(a);
  return a;
}

const call = async (path: string, init: RequestInit = {}, tenant = "t1") => {
  const token = await tenantToken({ tenant, scope: "sandbox:exec" });
  return SELF.fetch(`${BASE}${path}`, {
    ...init,
    headers: auth(token, (init.headers as Record<string, string>) ?? {}),
  });
};

describe("sandbox routing by cluster", () => {
  it("sends a sandbox's request only to an agent of the cluster its id names", async () => {
    const c1 = await clusterAgent("c1");
    const c2 = await clusterAgent("c2");
    await waitForAgents(TUNNEL, "eu-1", 2);
    for (let i = 0; i < 4; i++) {
      const res = await call(`/v1/sandboxes/sb.eu-1.c2.${RAND}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { served: string }).served).toBe("agent-c2");
    }
    expect(c1.received.length).toBe(0);
    expect(c2.received.length).toBe(4);
  });

  it("503 sandbox_cluster_unavailable when no agent of that cluster is connected, never another cluster", async () => {
    const c1 = await clusterAgent("c1");
    await waitForAgents(TUNNEL, "eu-1", 1);
    await expectError(
      await call(`/v1/sandboxes/sb.eu-1.c9.${RAND}/exec`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ command: "true" }),
      }),
      503,
      "sandbox_cluster_unavailable",
    );
    expect(c1.received.length).toBe(0);
  });

  it("a malformed id or one of an unknown region is 404 sandbox_not_found without a relay", async () => {
    const c1 = await clusterAgent("default");
    await waitForAgents(TUNNEL, "eu-1", 1);
    await expectError(await call("/v1/sandboxes/nope"), 404, "sandbox_not_found");
    await expectError(await call(`/v1/sandboxes/sb.mars-1.default.${RAND}`), 404, "sandbox_not_found");
    await expectError(await call(`/v1/sandboxes/sb.eu-1.default.${RAND}x`), 404, "sandbox_not_found");
    expect(c1.received.length).toBe(0);
  });

  it("file PUT relays the raw bytes; GET restores Content-Length; a body-less PUT is refused", async () => {
    const c1 = await clusterAgent("c1");
    await waitForAgents(TUNNEL, "eu-1", 1);
    const bytes = new Uint8Array([0, 255, 1, 2]);
    const put = await call(`/v1/sandboxes/sb.eu-1.c1.${RAND}/files/data/x.bin`, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes,
    });
    expect(await put.json()).toEqual({ path: "/workspace/data/x.bin", size: 4 });
    expect([...c1.received[0]!.body]).toEqual([0, 255, 1, 2]);
    const get = await call(`/v1/sandboxes/sb.eu-1.c1.${RAND}/files/data/x.bin`);
    expect(get.headers.get("content-length")).toBe("3");
    expect(get.headers.get("x-sandbox-file-size")).toBeNull();
    expect([...new Uint8Array(await get.arrayBuffer())]).toEqual([7, 8, 9]);
    await expectError(
      await call(`/v1/sandboxes/sb.eu-1.c1.${RAND}/files/data/x.bin`, { method: "PUT" }),
      400,
      "invalid_request",
    );
  });

  it("network GET/PUT go to the sandbox's cluster; a bad entry is 400 naming it, without a relay", async () => {
    const c1 = await clusterAgent("c1");
    await waitForAgents(TUNNEL, "eu-1", 1);
    const path = `/v1/sandboxes/sb.eu-1.c1.${RAND}/network`;
    expect((await call(path)).status).toBe(200);
    const put = await call(path, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ allow: ["pkgs.test", "*.example.com:8443"] }),
    });
    expect(put.status).toBe(200);
    expect(c1.received.map((r) => `${r.frame.method} ${new URL(r.request.url).pathname}`)).toEqual([
      `GET ${path}`,
      `PUT ${path}`,
    ]);
    expect(JSON.parse(new TextDecoder().decode(c1.received[1]!.body))).toEqual({
      allow: ["pkgs.test", "*.example.com:8443"],
    });
    const bad = await call(path, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ allow: ["pkgs.test", "*.com"] }),
    });
    const body = await expectError(bad, 400, "invalid_request");
    // (`*` is grammatical: whether it is permitted is the agent's EGRESS_ALLOW_ANY_HOST.)
    expect(body.message).toMatch(/allow\.1: "\*\.com": a wildcard needs at least two labels/);
    expect(c1.received).toHaveLength(2);
  });

  it("/openapi.json documents every sandbox route with its status codes and raw-byte bodies", async () => {
    const doc = (await (await SELF.fetch(`${BASE}/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<
          string,
          { responses: Record<string, unknown>; requestBody?: { content: Record<string, unknown> } }
        >
      >;
    };
    const p = doc.paths;
    expect(Object.keys(p["/v1/sandboxes"] ?? {}).sort()).toEqual(["get", "post"]);
    expect(Object.keys(p["/v1/sandboxes"]?.post?.responses ?? {})).toEqual(
      expect.arrayContaining(["201", "200", "404", "429", "503"]),
    );
    expect(Object.keys(p["/v1/sandboxes/{id}"] ?? {}).sort()).toEqual(["delete", "get"]);
    expect(Object.keys(p["/v1/sandboxes/{id}"]?.delete?.responses ?? {})).toContain("204");
    expect(Object.keys(p["/v1/sandboxes/{id}/exec"] ?? {})).toEqual(["post"]);
    expect(Object.keys(p["/v1/sandboxes/{id}/network"] ?? {}).sort()).toEqual(["get", "put"]);
    const files = p["/v1/sandboxes/{id}/files/{path}"] ?? {};
    expect(Object.keys(files).sort()).toEqual(["delete", "get", "put"]);
    expect(Object.keys(files.put?.requestBody?.content ?? {})).toEqual(["application/octet-stream"]);
  });
  it("processes: raw stdin bytes are relayed; Last-Event-ID travels as since", async () => {
    const c1 = await clusterAgent("c1");
    await waitForAgents(TUNNEL, "eu-1", 1);
    const base = `/v1/sandboxes/sb.eu-1.c1.${RAND}/processes`;
    await call(`${base}/12/stdin?eof=1`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: new Uint8Array([0, 10, 255]),
    });
    const stdin = c1.received[0]!;
    expect(new URL(stdin.request.url).pathname + new URL(stdin.request.url).search).toBe(
      `${base}/12/stdin?eof=1`,
    );
    expect([...stdin.body]).toEqual([0, 10, 255]);
    await call(`${base}/12/output`, { headers: { Accept: "text/event-stream", "Last-Event-ID": "4096" } });
    const stream = new URL(c1.received[1]!.request.url);
    expect([stream.pathname, stream.searchParams.get("since")]).toEqual([`${base}/12/output`, "4096"]);
    expect(c1.received[1]!.request.headers.get("accept")).toBe("text/event-stream");
    // An explicit since wins over Last-Event-ID.
    await call(`${base}/12/output?since=7`, {
      headers: { Accept: "text/event-stream", "Last-Event-ID": "9" },
    });
    expect(new URL(c1.received[2]!.request.url).searchParams.get("since")).toBe("7");
    expect(c1.received.length).toBe(3);
  });

  it("processes: bad pids, offsets, signals and bodies are refused before a relay", async () => {
    const c1 = await clusterAgent("c1");
    await waitForAgents(TUNNEL, "eu-1", 1);
    const base = `/v1/sandboxes/sb.eu-1.c1.${RAND}/processes`;
    const json = { "Content-Type": "application/json" };
    const refused = (path: string, init: RequestInit = {}) => call(path, init, "t-refused");
    await expectError(await refused(`${base}/abc`), 404, "process_not_found");
    await expectError(await refused(`${base}/0/output`), 404, "process_not_found");
    await expectError(
      await refused(`${base}/12/output`, { headers: { Accept: "text/event-stream", "Last-Event-ID": "x" } }),
      400,
      "invalid_request",
    );
    await expectError(await refused(`${base}/12/output?since=-1`), 400, "invalid_request");
    await expectError(
      await refused(`${base}/12/signal`, { method: "POST", headers: json, body: '{"signal":"SIGSEGV"}' }),
      400,
      "invalid_request",
    );
    await expectError(
      await refused(base, { method: "POST", headers: json, body: '{"command":"cat","argv":["cat"]}' }),
      400,
      "invalid_request",
    );
    await expectError(
      await refused(`${base}/12/stdin?eof=yes`, { method: "POST", body: "x" }),
      400,
      "invalid_request",
    );
    expect(c1.received.length).toBe(0);
  });

  it("/openapi.json documents the process routes", async () => {
    const doc = (await (await SELF.fetch(`${BASE}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const p = doc.paths;
    expect(Object.keys(p["/v1/sandboxes/{id}/processes"] ?? {}).sort()).toEqual(["get", "post"]);
    expect(Object.keys(p["/v1/sandboxes/{id}/processes"]?.post?.responses ?? {})).toContain("201");
    expect(Object.keys(p["/v1/sandboxes/{id}/processes/{pid}"] ?? {}).sort()).toEqual(["delete", "get"]);
    for (const action of ["stdin", "signal", "resize"]) {
      expect(Object.keys(p[`/v1/sandboxes/{id}/processes/{pid}/${action}`] ?? {})).toEqual(["post"]);
    }
    expect(Object.keys(p["/v1/sandboxes/{id}/processes/{pid}/output"] ?? {})).toEqual(["get"]);
  });
});
