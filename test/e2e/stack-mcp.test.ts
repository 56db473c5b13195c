import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { POOL_SSE_EVENTS, type PoolEvent } from "../../shared/events.ts";
import { linkFetch } from "../support/link-fetch.ts";
import { readSse, tempDir } from "./stack-helpers.ts";

// Issue 14's MCP server: the SDK's own Client over Streamable HTTP against the edge in workerd,
// tools dispatched through the edge's routes to real agents and devcluster pods.

const tmp = tempDir("stack-mcp-");
let stack: Stack;
const clients: Client[] = [];

beforeAll(async () => {
  stack = await startStack({
    dir: tmp.dir,
    agentsPerRegion: 1,
    poolSize: 2,
    agentEnv: { LOG_LEVEL: "info" },
    edgeVars: { TENANT_QUOTA_BURST: "100", TENANT_QUOTA_PER_MINUTE: "600" },
  });
}, 90_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await stack?.close();
  tmp.remove();
});

async function connect(token: string): Promise<Client> {
  const client = new Client({ name: "stack-mcp-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${stack.edgeUrl}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  clients.push(client);
  return client;
}

const text = (r: CallToolResult) =>
  r.content
    .filter((c) => c.type === "text")
    .map((c) => (c as { text: string }).text)
    .join("\n");

/** A token whose payload was changed after signing (another tenant): the signature no longer matches. */
function forge(token: string): string {
  const [h, p, s] = token.split(".") as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Record<string, unknown>;
  payload.tenant = "tenant-b";
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
}

/** The pool events of the stack's region as they come (admin token), until close(). */
function watchEvents() {
  const seen: PoolEvent[] = [];
  const stop = new AbortController();
  let wake = () => {};
  void (async () => {
    const res = await fetch(`${stack.edgeUrl}/v1/events`, {
      headers: { authorization: `Bearer ${stack.tokens.admin}`, accept: "text/event-stream" },
      signal: stop.signal,
    });
    await readSse(res, (m) => {
      if (m.event === POOL_SSE_EVENTS.event) {
        seen.push(JSON.parse(m.data) as PoolEvent);
        wake();
      }
    });
  })().catch(() => {});
  return {
    seen: () => [...seen],
    /** The first event that `match`es, waiting for it (bounded by the test's timeout). */
    until: (match: (e: PoolEvent) => boolean) =>
      new Promise<PoolEvent>((resolve) => {
        const look = () => {
          const e = seen.find(match);
          if (e) resolve(e);
        };
        wake = look;
        look();
      }),
    close: () => stop.abort(),
  };
}

const initialize = (auth?: string) =>
  fetch(`${stack.edgeUrl}/mcp`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(auth ? { authorization: auth } : {}),
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "0" } },
    }),
    signal: AbortSignal.timeout(10_000),
  });

describe("MCP at the edge", () => {
  it("initialize negotiates 2025-06-18+ and tools/list offers every tool with JSON Schemas", async () => {
    const client = await connect(stack.tokens.tenantA);
    expect(client.getServerVersion()?.name).toBe("pi-sandbox-runtime");
    expect(client.getServerCapabilities()?.tools).toBeDefined();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(
      [
        "create_sandbox",
        "delete_sandbox",
        "get_network",
        "edit_file",
        "list_files",
        "read_file",
        "run_in_sandbox",
        "write_file",
        "start_process",
        "read_process_output",
        "write_process_stdin",
        "stop_process",
        "list_processes",
        "open_port_link",
      ].sort(),
    );
    // A process needs a sandbox that lives on: sandbox_id is required there.
    const start = tools.find((t) => t.name === "start_process")!;
    expect(start.inputSchema.required?.sort()).toEqual(["command", "sandbox_id"]);
    expect(start.outputSchema?.properties).toHaveProperty("next_offset");
    const run = tools.find((t) => t.name === "run_in_sandbox")!;
    expect(run.inputSchema.required).toEqual(["command"]);
    expect(Object.keys(run.inputSchema.properties ?? {}).sort()).toEqual([
      "command",
      "sandbox_id",
      "timeout_seconds",
    ]);
    expect(run.outputSchema?.properties).toHaveProperty("exit_code");
    expect(run.description).toMatch(/shell command/);

    const raw = await initialize(`Bearer ${stack.tokens.tenantA}`);
    expect(raw.status).toBe(200);
    const body = (await raw.json()) as { result: { protocolVersion: string } };
    expect(body.result.protocolVersion >= "2025-06-18").toBe(true);
    // Stateless: no session to resume or delete.
    expect(raw.headers.get("mcp-session-id")).toBeNull();
  });

  it("run_in_sandbox without sandbox_id runs in a disposable pod: structured result plus text", async () => {
    const client = await connect(stack.tokens.tenantA);
    const r = (await client.callTool({
      name: "run_in_sandbox",
      arguments: { command: "echo hi from $(pwd); echo oops >&2; exit 3" },
    })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({
      exit_code: 3,
      stdout: "hi from /workspace\n",
      stderr: "oops\n",
      timed_out: false,
      truncated: false,
    });
    expect(text(r)).toMatch(/^exit_code: 3\n/);
    expect(text(r)).toContain("stdout:\nhi from /workspace");
  });

  it("bad arguments are a tool error with our code; the connection stays usable", async () => {
    const client = await connect(stack.tokens.tenantA);
    const bad = (await client.callTool({
      name: "read_file",
      arguments: { path: "../../etc/passwd" },
    })) as CallToolResult;
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/^error invalid_request: .*'\.\.'/);
    expect(bad._meta?.["pi-sandbox-runtime/error"]).toMatchObject({ code: "invalid_request" });
    const tooLong = (await client.callTool({
      name: "run_in_sandbox",
      arguments: { command: "true", timeout_seconds: 100_000 },
    })) as CallToolResult;
    expect(tooLong.isError).toBe(true);
    const fine = (await client.callTool({
      name: "run_in_sandbox",
      arguments: { command: "true" },
    })) as CallToolResult;
    expect(fine.structuredContent).toMatchObject({ exit_code: 0 });
  });

  it("every tool call is an edge request: counted by the tenant quota and refused without the scope", async () => {
    const noExec = await stack.issuer.mint({
      tenant: "tenant-c",
      subject: "carol",
      scopes: ["sandbox:chat"],
    });
    const client = await connect(noExec);
    const r = (await client.callTool({
      name: "run_in_sandbox",
      arguments: { command: "true" },
    })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^error insufficient_scope: .*\(request [0-9a-f-]{36}\)$/);
  });

  it("no token: 401 with WWW-Authenticate naming the protected-resource metadata, which names the issuer", async () => {
    const res = await initialize();
    expect(res.status).toBe(401);
    const challenge = res.headers.get("www-authenticate") ?? "";
    const url = /resource_metadata="([^"]+)"/.exec(challenge)?.[1];
    expect(challenge.startsWith("Bearer ")).toBe(true);
    expect(url).toBe(`${stack.edgeUrl}/.well-known/oauth-protected-resource/mcp`);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unauthenticated");
    const meta = (await (await fetch(url!)).json()) as Record<string, unknown>;
    expect(meta.resource).toBe(`${stack.edgeUrl}/mcp`);
    expect(meta.authorization_servers).toEqual([stack.issuer.issuer]);
    const root = (await (
      await fetch(`${stack.edgeUrl}/.well-known/oauth-protected-resource`)
    ).json()) as object;
    expect(root).toEqual(meta);
    // The SDK's client surfaces the 401 (it would start OAuth discovery if given an auth provider).
    await expect(connect("")).rejects.toThrow();
  });

  it("a forged token: 401 invalid_token with the challenge", async () => {
    const res = await initialize(`Bearer ${forge(stack.tokens.tenantA)}`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_token");
    expect(res.headers.get("www-authenticate")).toMatch(
      /^Bearer resource_metadata="[^"]+", error="invalid_token"/,
    );
  });

  it("GET and DELETE /mcp: 405 (stateless server), still behind auth", async () => {
    const get = await fetch(`${stack.edgeUrl}/mcp`, {
      headers: { authorization: `Bearer ${stack.tokens.tenantA}`, accept: "text/event-stream" },
    });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const del = await fetch(`${stack.edgeUrl}/mcp`, { method: "DELETE" });
    expect(del.status).toBe(401);
  });
});

describe("MCP tools on sandboxes (issue 19's routes)", () => {
  const call = async (client: Client, name: string, args: Record<string, unknown>) =>
    (await client.callTool({ name, arguments: args })) as CallToolResult;

  it("a sandbox used across calls: create, write, edit, read, list, run, delete", async () => {
    const a = await connect(stack.tokens.tenantA);
    const made = await call(a, "create_sandbox", { idle_timeout_seconds: 120 });
    expect(made.isError, text(made)).toBeFalsy();
    const id = (made.structuredContent as { sandbox_id: string }).sandbox_id;
    expect(id).toBeTruthy();
    const w = await call(a, "write_file", {
      sandbox_id: id,
      path: "src/hello.py",
      content: "x = 1\nx = 1\n",
    });
    expect(w.structuredContent).toEqual({ path: "/workspace/src/hello.py", bytes_written: 12 });
    const amb = await call(a, "edit_file", {
      sandbox_id: id,
      path: "src/hello.py",
      old_string: "x = 1",
      new_string: "y = 2",
    });
    expect(amb.isError).toBe(true);
    expect(text(amb)).toMatch(/^error edit_not_unique: /);
    const e = await call(a, "edit_file", {
      sandbox_id: id,
      path: "/workspace/src/hello.py",
      old_string: "x = 1\nx",
      new_string: "y = 2\nx",
    });
    expect(e.structuredContent).toMatchObject({ replacements: 1 });
    const r = await call(a, "read_file", { sandbox_id: id, path: "src/hello.py", offset: 2 });
    expect(r.structuredContent).toMatchObject({ content: "     2\tx = 1", total_lines: 2, binary: false });
    const ran = await call(a, "run_in_sandbox", {
      sandbox_id: id,
      command: "cat src/hello.py && printf '\\0\\1' > b.bin",
    });
    expect(ran.structuredContent).toMatchObject({ exit_code: 0, stdout: "y = 2\nx = 1\n" });
    const bin = await call(a, "read_file", { sandbox_id: id, path: "b.bin" });
    expect(text(bin)).toBe("/workspace/b.bin: binary file, 2 bytes (not shown)");
    const l = await call(a, "list_files", { sandbox_id: id, recursive: true });
    const paths = (l.structuredContent as { entries: Array<{ path: string; type: string }> }).entries.map(
      (x) => x.path,
    );
    expect(paths).toEqual(expect.arrayContaining(["b.bin", "src", "src/hello.py"]));
    const missing = await call(a, "read_file", { sandbox_id: id, path: "nope.txt" });
    expect(text(missing)).toMatch(/^error file_not_found: /);

    // Tenant B cannot reach A's sandbox through MCP either.
    const b = await connect(stack.tokens.tenantB);
    const stolen = await call(b, "read_file", { sandbox_id: id, path: "src/hello.py" });
    expect(stolen.isError).toBe(true);
    expect(text(stolen)).toMatch(/^error sandbox_not_found: /);
    const stolenRun = await call(b, "run_in_sandbox", { sandbox_id: id, command: "cat src/hello.py" });
    expect(text(stolenRun)).toMatch(/^error sandbox_not_found: /);
    // get_network reads the sandbox's policy (none here) through the route, with its ownership check.
    const net = await call(a, "get_network", { sandbox_id: id });
    expect(net.structuredContent).toEqual({ allow: [], deny: [] });
    expect(text(net)).toMatch(/There is no network access/);
    expect(text(await call(b, "get_network", { sandbox_id: id }))).toMatch(/^error sandbox_not_found: /);

    const del = await call(a, "delete_sandbox", { sandbox_id: id });
    expect(del.structuredContent).toEqual({ sandbox_id: id, deleted: true });
    const after = await call(a, "run_in_sandbox", { sandbox_id: id, command: "true" });
    expect(text(after)).toMatch(/^error sandbox_not_found: /);
  }, 60_000);

  it("process tools: start, type into it, read with a wait, stop; bad pids and other tenants get clear tool errors; events", async () => {
    const events = watchEvents();
    try {
      const a = await connect(stack.tokens.tenantA);
      const made = await call(a, "create_sandbox", { idle_timeout_seconds: 120 });
      const id = (made.structuredContent as { sandbox_id: string }).sandbox_id;
      const other = (await call(a, "create_sandbox", {})).structuredContent as { sandbox_id: string };

      const started = await call(a, "start_process", {
        sandbox_id: id,
        command: "echo ready; read x; echo got $x; exit 7",
        yield_time_ms: 0,
      });
      expect(started.isError, text(started)).toBeFalsy();
      const pid = (started.structuredContent as { pid: number }).pid;
      // Its first line, read with a wait that ends when it comes: the offset goes on from there.
      let read = await call(a, "read_process_output", { sandbox_id: id, pid, yield_time_ms: 10_000 });
      expect(read.structuredContent).toMatchObject({ pid, running: true, offset: 0, dropped: 0 });
      expect((read.structuredContent as { output: string }).output).toBe("ready\n");
      const next = (read.structuredContent as { next_offset: number }).next_offset;
      expect(next).toBe(6);
      const typed = await call(a, "write_process_stdin", {
        sandbox_id: id,
        pid,
        chars: "abc\n",
        yield_time_ms: 10_000,
      });
      expect(typed.structuredContent).toMatchObject({
        pid,
        running: false,
        exit_code: 7,
        output: "got abc\n",
        offset: 6,
        next_offset: 14,
      });
      expect(text(typed)).toBe(`process ${pid}: exited with code 7\nnext_offset: 14\noutput:\ngot abc\n`);
      read = await call(a, "read_process_output", { sandbox_id: id, pid, since: next });
      expect(read.structuredContent).toMatchObject({ output: "got abc\n", running: false, exit_code: 7 });

      const typedAfter = await call(a, "write_process_stdin", { sandbox_id: id, pid, chars: "more\n" });
      expect(text(typedAfter)).toMatch(/^error process_exited: .*exited with code 7/);
      const nobody = await call(a, "read_process_output", { sandbox_id: id, pid: 4_000_000 });
      expect(nobody.isError).toBe(true);
      expect(nobody._meta?.["pi-sandbox-runtime/error"]).toMatchObject({ code: "process_not_found" });
      // The pid of another sandbox: that sandbox has no such process.
      const elsewhere = await call(a, "read_process_output", { sandbox_id: other.sandbox_id, pid });
      expect(text(elsewhere)).toMatch(/^error process_not_found: /);
      const noSandbox = await call(a, "start_process", { command: "sleep 1" });
      expect(text(noSandbox)).toMatch(/^error invalid_request: .*sandbox_id/);
      const b = await connect(stack.tokens.tenantB);
      for (const [name, args] of [
        ["list_processes", {}],
        ["read_process_output", { pid }],
        ["stop_process", { pid }],
        ["start_process", { command: "true" }],
      ] as const) {
        const stolen = await call(b, name, { sandbox_id: id, ...args });
        expect(text(stolen), name).toMatch(/^error sandbox_not_found: /);
      }

      const sleeper = await call(a, "start_process", {
        sandbox_id: id,
        command: "sleep 600",
        yield_time_ms: 0,
      });
      const sleeperPid = (sleeper.structuredContent as { pid: number }).pid;
      const listed = await call(a, "list_processes", { sandbox_id: id });
      expect((listed.structuredContent as { processes: unknown[] }).processes).toEqual([
        expect.objectContaining({ pid: sleeperPid, running: true, command: "sleep 600" }),
        expect.objectContaining({ pid, running: false, exit_code: 7 }),
      ]);
      const stopped = await call(a, "stop_process", { sandbox_id: id, pid: sleeperPid });
      expect(stopped.structuredContent).toEqual({
        pid: sleeperPid,
        running: false,
        exit_code: null,
        signal: "SIGTERM",
        timed_out: false,
      });

      // The agent's bus saw both start and end, with the sandbox, the tenant and how they ended.
      const exited = await events.until(
        (e) => e.type === "process.exited" && (e.data as { pid: number }).pid === sleeperPid,
      );
      expect(exited).toMatchObject({
        tenant: "tenant-a",
        data: { sandboxId: id, commandPreview: "sleep 600", exitCode: null, signal: "SIGTERM" },
      });
      const all = events.seen();
      expect(
        all.filter((e) => e.type === "process.started").map((e) => (e.data as { pid: number }).pid),
      ).toEqual(expect.arrayContaining([pid, sleeperPid]));
      expect(
        all.find((e) => e.type === "process.exited" && (e.data as { pid: number }).pid === pid),
      ).toMatchObject({
        data: { sandboxId: id, exitCode: 7, signal: null, timedOut: false },
      });
      await call(a, "delete_sandbox", { sandbox_id: id });
      await call(a, "delete_sandbox", { sandbox_id: other.sandbox_id });
    } finally {
      events.close();
    }
  }, 90_000);

  it("open_port_link: a server the model started is fetched through the URL; a bad port is a clear tool error; events", async () => {
    const events = watchEvents();
    const a = await connect(stack.tokens.tenantA);
    const made = await call(a, "create_sandbox", { idle_timeout_seconds: 120 });
    const id = (made.structuredContent as { sandbox_id: string }).sandbox_id;
    try {
      await call(a, "write_file", { sandbox_id: id, path: "index.html", content: "<p>from the sandbox</p>" });
      const started = await call(a, "start_process", {
        sandbox_id: id,
        command: "exec python3 -u -m http.server 8000 --bind 127.0.0.1",
        yield_time_ms: 0,
      });
      const pid = (started.structuredContent as { pid: number }).pid;
      let next = 0;
      for (let i = 0; i < 10; i++) {
        const read = await call(a, "read_process_output", {
          sandbox_id: id,
          pid,
          since: 0,
          yield_time_ms: 3000,
        });
        next = (read.structuredContent as { next_offset: number }).next_offset;
        if (text(read).includes("Serving HTTP")) break;
      }
      expect(next).toBeGreaterThan(0);
      const opened = await call(a, "open_port_link", {
        sandbox_id: id,
        port: 8000,
        ttl_seconds: 120,
        public: true,
      });
      expect(opened.isError, text(opened)).toBeFalsy();
      const link = opened.structuredContent as {
        url: string;
        expires_at: string;
        port: number;
        public: boolean;
      };
      expect(link).toMatchObject({ port: 8000, public: true });
      const ttl = Date.parse(link.expires_at) - Date.now();
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(120_000);
      expect(text(opened)).toContain(link.url);
      const page = await linkFetch(link.url);
      expect(page.status).toBe(200);
      expect(await page.text()).toBe("<p>from the sandbox</p>");

      const outside = await call(a, "open_port_link", { sandbox_id: id, port: 70_000 });
      expect(text(outside)).toMatch(/^error invalid_request: .*a port is 1-65535/);
      const noSandbox = await call(a, "open_port_link", { port: 8000 });
      expect(text(noSandbox)).toMatch(/^error invalid_request: .*sandbox_id/);
      const b = await connect(stack.tokens.tenantB);
      const stolen = await call(b, "open_port_link", { sandbox_id: id, port: 8000 });
      expect(text(stolen)).toMatch(/^error sandbox_not_found: /);

      // Typed events on the agent's bus, scoped to the tenant, carrying the link's id and never its token.
      const linkId = (opened.structuredContent as { link_id: string }).link_id;
      const token = new URL(link.url).searchParams.get("pi_link") ?? "";
      // The agent's snapshot lists the sandbox's open links (what a dashboard opened now shows), no token.
      const pool = await fetch(`${stack.edgeUrl}/v1/pool`, {
        headers: { authorization: `Bearer ${stack.tokens.admin}` },
      }).then((r) => r.text());
      expect(pool).not.toContain(token);
      const listed = (
        JSON.parse(pool) as {
          regions: Array<{ pool?: { sandboxes?: Array<{ id: string; links?: Array<{ id: string }> }> } }>;
        }
      ).regions.flatMap((r) => r.pool?.sandboxes ?? []);
      expect(listed.find((b) => b.id === id)?.links).toEqual([
        expect.objectContaining({ id: linkId, port: 8000, public: true, expiresAt: link.expires_at }),
      ]);
      const revoked = await fetch(`${stack.edgeUrl}/v1/sandboxes/${id}/ports/8000/links/${linkId}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${stack.tokens.tenantA}` },
      });
      expect(revoked.status).toBe(204);
      const created = await events.until(
        (e) => e.type === "port_link.created" && (e.data as { linkId: string }).linkId === linkId,
      );
      expect(created).toMatchObject({
        tenant: "tenant-a",
        data: { sandboxId: id, linkId, port: 8000, public: true, expiresAt: link.expires_at },
      });
      const gone = await events.until(
        (e) => e.type === "port_link.revoked" && (e.data as { linkId: string }).linkId === linkId,
      );
      expect(gone).toMatchObject({ tenant: "tenant-a", data: { sandboxId: id, linkId, port: 8000 } });
      expect(token.length).toBeGreaterThan(20);
      expect(JSON.stringify(events.seen())).not.toContain(token);
    } finally {
      events.close();
      await call(a, "delete_sandbox", { sandbox_id: id });
    }
  }, 90_000);

  it("a file tool without sandbox_id runs in a one-shot sandbox that is deleted after", async () => {
    const token = await stack.issuer.mint({
      tenant: "tenant-oneshot",
      subject: "dora",
      scopes: ["sandbox:exec"],
    });
    const c = await connect(token);
    const w = await call(c, "write_file", { path: "a.txt", content: "hello" });
    expect(w.structuredContent).toEqual({ path: "/workspace/a.txt", bytes_written: 5 });
    const l = await call(c, "list_files", {});
    expect(l.structuredContent).toMatchObject({ path: "/workspace", truncated: false });
    const res = await fetch(`${stack.edgeUrl}/v1/sandboxes`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(((await res.json()) as { sandboxes: unknown[] }).sandboxes).toEqual([]);
  }, 60_000);
});
