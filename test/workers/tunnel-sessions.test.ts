import { env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { TERMINAL_SUBPROTOCOL } from "../../shared/api.ts";
import {
  DATA_KIND,
  decodeDataFrame,
  encodeDataFrame,
  TUNNEL_WS_MESSAGE_OVERHEAD_BYTES,
  TUNNEL_WS_WINDOW_BYTES,
  wsMessageCost,
} from "../../shared/tunnel.ts";
import { waitFor } from "../support/wait-for.ts";
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

/**
 * WebSocket sessions over the tunnel (the terminal route), in workerd: the edge route, the
 * TunnelDO's session relay and the frame codec, against an agent played by the test.
 */

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1", "us-1"]));

const SB = "sb.eu-1.default.abcdefghij0123456789";
const TTY = `/v1/sandboxes/${SB}/processes/7/tty`;

/** An agent that accepts every upgrade (or answers `refuse` instead). */
async function sessionAgent(
  refuse?: (path: string, requestId: string) => Response | null,
): Promise<TestAgent> {
  const a = await connectAgent("eu-1", async (r, ag) => {
    const no = refuse?.(r.frame.path, r.request.headers.get("x-request-id") ?? "") ?? null;
    if (no) return ag.respond(r.frame.id, no);
    expect(r.frame.websocket).toBe(true);
    await ag.verifier.verifyRequest(r.request);
    ag.acceptSession(r.frame.id);
  });
  agents.push(a);
  await waitForAgents(TUNNEL, "eu-1", 1);
  return a;
}

async function open(
  headers: Record<string, string>,
  path = TTY,
): Promise<{ res: Response; ws: WebSocket | null }> {
  const res = await SELF.fetch(`${BASE}${path}`, { headers: { Upgrade: "websocket", ...headers } });
  const ws = res.webSocket ?? null;
  if (ws) {
    ws.binaryType = "arraybuffer";
    ws.accept();
  }
  return { res, ws };
}

/** Messages and the close a client socket sees, collected as they come. */
function watch(ws: WebSocket) {
  const seen = {
    messages: [] as Array<string | Uint8Array>,
    close: null as { code: number; reason: string } | null,
  };
  ws.addEventListener("message", (ev) =>
    seen.messages.push(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data as ArrayBuffer)),
  );
  ws.addEventListener("close", (ev) => {
    seen.close = { code: ev.code, reason: ev.reason };
  });
  return seen;
}

const token = (scope = "sandbox:exec", tenant = "tenant-tty") => tenantToken({ tenant, scope });

describe("the binary data frame codec in workerd", () => {
  it("round-trips every kind; the payload is a view of the message", () => {
    for (const kind of Object.values(DATA_KIND)) {
      const bytes = new Uint8Array([0, 1, 2, 255]);
      const f = encodeDataFrame(kind, "id-1", 7, bytes);
      const d = decodeDataFrame(f.buffer as ArrayBuffer);
      expect(d.ok && { ...d.value, bytes: [...d.value.bytes] }).toEqual({
        kind,
        id: "id-1",
        seq: 7,
        bytes: [0, 1, 2, 255],
      });
    }
    expect(decodeDataFrame(new Uint8Array([4, 1, 65, 0, 0, 0, 0])).ok).toBe(false);
  });
});

describe("terminal sessions through the TunnelDO", () => {
  it("relays messages both ways in order (binary and text), selects only the terminal subprotocol", async () => {
    const a = await sessionAgent();
    const jwt = await token();
    // A browser's way: the token as a subprotocol, never echoed back.
    const { res, ws } = await open({ "Sec-WebSocket-Protocol": `${TERMINAL_SUBPROTOCOL}, bearer.${jwt}` });
    expect(res.status).toBe(101);
    expect(res.headers.get("Sec-WebSocket-Protocol")).toBe(TERMINAL_SUBPROTOCOL);
    const seen = watch(ws!);
    const id = a.received[0]!.frame.id;
    // The token went nowhere near the agent.
    expect(JSON.stringify(a.received[0]!.frame.headers)).not.toContain(jwt.slice(-20));
    // Frames delivered out of order are put back in order.
    a.sendWs(id, new TextEncoder().encode("b"), 1);
    a.sendWs(id, new TextEncoder().encode("a"), 0);
    a.sendWs(id, '{"type":"exit"}', 2);
    await waitFor("three messages", () => seen.messages.length === 3);
    expect(seen.messages.map((m) => (typeof m === "string" ? m : new TextDecoder().decode(m)))).toEqual([
      "a",
      "b",
      '{"type":"exit"}',
    ]);
    expect(typeof seen.messages[2]).toBe("string");
    ws!.send(new TextEncoder().encode("echo hi\n"));
    ws!.send('{"type":"resize","cols":100,"rows":30}');
    const s = a.sessions.get(id)!;
    await waitFor("the agent got both", () => s.messages.length === 2);
    expect(new TextDecoder().decode(s.messages[0] as Uint8Array)).toBe("echo hi\n");
    expect(s.messages[1]).toBe('{"type":"resize","cols":100,"rows":30}');
    ws!.close(1000, "bye");
  });

  it("a client close reaches the agent after every message before it; an agent close reaches the client", async () => {
    const a = await sessionAgent();
    const one = await open(auth(await token()));
    const id1 = a.received[0]!.frame.id;
    for (let i = 0; i < 5; i++) one.ws!.send(`m${i}`);
    one.ws!.close(4000, "client done");
    const s1 = a.sessions.get(id1)!;
    await waitFor("the agent heard the close", () => s1.closed !== null);
    expect(s1.closed).toEqual({ code: 4000, reason: "client done", messages: 5 });
    expect(s1.messages).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    // The client's closing handshake completes (the DO answers its close frame).
    const seen1 = watch(one.ws!);
    await waitFor("the client's close completed", () => seen1.close !== null || one.ws!.readyState === 3);

    const two = await open(auth(await token()));
    const seen = watch(two.ws!);
    const id2 = a.received[1]!.frame.id;
    a.sendWs(id2, "last words");
    a.closeWs(id2, 1000, "exited");
    await waitFor("the client saw the close", () => seen.close !== null);
    expect(seen.messages).toEqual(["last words"]);
    expect(seen.close).toEqual({ code: 1000, reason: "exited" });
    // Both sessions are gone from the DO: its budget is whole again (a new one opens).
    expect((await open(auth(await token()))).res.status).toBe(101);
  });

  it("the agent's tunnel dropping closes the client's socket (1011)", async () => {
    const a = await sessionAgent();
    const { ws } = await open(auth(await token()));
    const seen = watch(ws!);
    a.close(1001);
    await waitFor("the client was closed", () => seen.close !== null);
    expect(seen.close!.code).toBe(1011);
    expect(seen.close!.reason).toBe("tunnel_closed");
  });

  it("a client's frame storm is bounded by credit: the agent never holds more than the window; past the DO's queue the client is closed 1008", async () => {
    const a = await sessionAgent();
    a.creditSessions = false; // a session that stops reading
    const { ws } = await open(auth(await token()));
    const seen = watch(ws!);
    const id = a.received[0]!.frame.id;
    const s = a.sessions.get(id)!;
    const msg = new Uint8Array(64 * 1024 - TUNNEL_WS_MESSAGE_OVERHEAD_BYTES);
    const perWindow = TUNNEL_WS_WINDOW_BYTES / wsMessageCost(msg.byteLength);
    // Two windows and more: one goes to the agent, one queues in the DO, the rest is refused.
    for (let i = 0; i < perWindow * 2 + 4 && seen.close === null; i++) ws!.send(msg);
    await waitFor("the storm was cut off", () => seen.close !== null);
    expect(seen.close!.code).toBe(1008);
    await waitFor("the agent heard why", () => s.closed !== null);
    expect(s.closed!.code).toBe(1008);
    expect(s.messages.length).toBe(perWindow);
    expect(s.messages.length * wsMessageCost(msg.byteLength)).toBeLessThanOrEqual(TUNNEL_WS_WINDOW_BYTES);
  });

  it("credit moves the window: with the agent crediting, many windows' worth passes", async () => {
    const a = await sessionAgent();
    const { ws } = await open(auth(await token()));
    const id = a.received[0]!.frame.id;
    const s = a.sessions.get(id)!;
    const msg = new Uint8Array(16 * 1024);
    const n = Math.ceil((3 * TUNNEL_WS_WINDOW_BYTES) / msg.byteLength);
    // Sent at the agent's pace (each batch once the one before arrived): never past the window.
    for (let sent = 0; sent < n; ) {
      const batch = Math.min(32, n - sent);
      for (let i = 0; i < batch; i++) ws!.send(msg);
      sent += batch;
      await waitFor(`${sent} arrived`, () => s.messages.length === sent);
    }
    expect(s.bytes).toBe(n * msg.byteLength);
    ws!.close(1000);
  });

  it("the agent's credit is returned as the client is handed messages", async () => {
    const a = await sessionAgent();
    const { ws } = await open(auth(await token()));
    const seen = watch(ws!);
    const id = a.received[0]!.frame.id;
    const credits: number[] = [];
    a.ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return;
      const f = JSON.parse(ev.data) as { type: string; id: string; bytes?: number };
      if (f.type === "credit" && f.id === id) credits.push(f.bytes!);
    });
    const msg = new Uint8Array(8 * 1024);
    for (let i = 0; i < 8; i++) a.sendWs(id, msg);
    await waitFor("delivered", () => seen.messages.length === 8);
    await waitFor("credited", () => credits.reduce((x, y) => x + y, 0) >= 2 * 16 * 1024);
    ws!.close(1000);
  });

  it("refusals come before any upgrade: the agent's 404 / 409, a malformed sandbox id, no upgrade, no token, wrong scope", async () => {
    await sessionAgent((path, requestId) =>
      path.includes("/processes/8/")
        ? Response.json({ error: { code: "not_a_tty", message: "no tty", requestId } }, { status: 409 })
        : path.includes("/processes/9/")
          ? Response.json(
              { error: { code: "sandbox_not_found", message: "no sandbox", requestId } },
              { status: 404 },
            )
          : null,
    );
    const jwt = await token();
    const notTty = await open(auth(jwt), `/v1/sandboxes/${SB}/processes/8/tty`);
    expect(notTty.ws).toBeNull();
    await expectError(notTty.res, 409, "not_a_tty");
    const other = await open(auth(jwt), `/v1/sandboxes/${SB}/processes/9/tty`);
    expect(other.ws).toBeNull();
    await expectError(other.res, 404, "sandbox_not_found");
    await expectError(
      (await open(auth(jwt), "/v1/sandboxes/nope/processes/7/tty")).res,
      404,
      "sandbox_not_found",
    );
    await expectError(
      (await open(auth(jwt), `/v1/sandboxes/${SB}/processes/x/tty`)).res,
      404,
      "process_not_found",
    );
    await expectError(await SELF.fetch(`${BASE}${TTY}`, { headers: auth(jwt) }), 426, "websocket_required");
    await expectError((await open({})).res, 401, "unauthenticated");
    await expectError((await open(auth(await token("sandbox:chat")))).res, 403, "insufficient_scope");
    // A subprotocol list without ours is refused rather than answered with none (or the token).
    await expectError(
      (await open({ "Sec-WebSocket-Protocol": `bearer.${jwt}` })).res,
      400,
      "invalid_request",
    );
    // The bearer subprotocol is for WebSocket routes only.
    const plain = await SELF.fetch(`${BASE}/v1/sandboxes`, {
      headers: { "Sec-WebSocket-Protocol": `bearer.${jwt}` },
    });
    await expectError(plain, 401, "unauthenticated");
  });
});
