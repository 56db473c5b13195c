import { env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import {
  TUNNEL_BUFFER_BUDGET_BYTES,
  TUNNEL_HEADERS,
  TUNNEL_ORIGIN,
  TUNNEL_STATS_PATH,
  type TunnelStats,
} from "../../edge/relay/protocol.ts";
import {
  bodySha256,
  createRelayVerifier,
  RELAY_HEADER,
  relayAudience,
  STREAMED_BODY,
} from "../../shared/relay-signing.ts";
import { TUNNEL_CHUNK_BYTES, TUNNEL_INITIAL_WINDOW_BYTES } from "../../shared/tunnel.ts";
import { TUNNEL_IDLE } from "../support/tunnel-idle.ts";
import { waitFor } from "../support/wait-for.ts";
import { RELAY_PUBLIC_JWKS } from "./fixtures/test-keys.ts";
import {
  type AgentRequest,
  auth,
  BASE,
  closeAgents,
  connectAgent,
  expectError,
  type TestAgent,
  TUNNEL_MAX_FRAME_BYTES,
  tenantToken,
  waitForAgents,
} from "./support.ts";

// File uploads stream Worker → TunnelDO → agent under the agent's credit window, and the relay
// binds the body through a trailer the DO signs once the body has passed (issue 24, item 2).

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1"]));

const RAND = "abcdefghij0123456789";
const FILE = `/v1/sandboxes/sb.eu-1.default.${RAND}/files/up/big.bin`;
const MiB = 1024 * 1024;

/** Deterministic, not repetitive at any chunk size: a body reordered or cut would not hash the same. */
function pattern(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = 2463534242;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * The agent's check of a streamed upload: the head binds no body, the trailer binds these bytes.
 * A fresh verifier each time, so one relay can be checked against several bodies (no replay refusal).
 */
async function verifyUpload(r: AgentRequest, body = r.body) {
  const url = new URL(r.request.url);
  const verifier = createRelayVerifier({
    publicKeys: RELAY_PUBLIC_JWKS["eu-1"]!,
    audience: relayAudience("eu-1"),
  });
  const head = await verifier.verify({
    token: r.request.headers.get(RELAY_HEADER),
    method: r.frame.method,
    path: `${url.pathname}${url.search}`,
    body: STREAMED_BODY,
  });
  if (!head.ok) return head;
  return verifier.verifyTrailer(r.trailer, head.value, {
    sha256: await bodySha256(body),
    size: body.byteLength,
  });
}

async function uploader(handler?: (r: AgentRequest, ag: TestAgent) => Promise<void>): Promise<TestAgent> {
  const a = await connectAgent(
    "eu-1",
    handler ??
      (async (r, ag) => {
        const checked = await verifyUpload(r);
        if (!checked.ok) throw new Error(checked.error.code);
        await ag.respond(
          r.frame.id,
          Response.json({ path: "/workspace/up/big.bin", size: r.body.byteLength }),
        );
      }),
  );
  agents.push(a);
  await waitForAgents(TUNNEL, "eu-1", 1);
  return a;
}

async function put(body: BodyInit, path = FILE): Promise<Response> {
  const token = await tenantToken({ tenant: "t-up", scope: "sandbox:exec" });
  return SELF.fetch(`${BASE}${path}`, {
    method: "PUT",
    headers: auth(token, { "Content-Type": "application/octet-stream" }),
    body,
  });
}

/** A request body that sends `first` and then stays open until `release()` (an upload in progress). */
function openBody(first: Uint8Array): { stream: ReadableStream<Uint8Array>; release: () => void } {
  let release = () => {};
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(first);
      release = () => c.close();
    },
  });
  return { stream, release: () => release() };
}

describe("streamed uploads", () => {
  it("a 48 MiB upload arrives byte-exact in chunk frames, bound by a signed trailer", {
    timeout: 180_000,
  }, async () => {
    const a = await uploader();
    const bytes = pattern(48 * MiB);
    const res = await put(bytes);
    expect(await res.json()).toEqual({ path: "/workspace/up/big.bin", size: 48 * MiB });
    const got = a.received[0]!;
    expect(got.frame.bodyFollows).toBe(true);
    expect(got.frame.bodyInTrailer).toBe(true);
    expect(got.body.byteLength).toBe(bytes.byteLength);
    expect(await bodySha256(got.body)).toBe(await bodySha256(bytes));
    expect(a.maxFrameBytes).toBeLessThanOrEqual(TUNNEL_MAX_FRAME_BYTES);
  });

  it("the trailer binds exactly the bytes sent and this relay: one flipped byte, or another relay's trailer, fails", async () => {
    const a = await uploader(async (r, ag) => {
      await ag.respond(r.frame.id, Response.json({ path: "/workspace/up/big.bin", size: r.body.byteLength }));
    });
    await put(pattern(300 * 1024));
    await put(pattern(300 * 1024));
    const [first, second] = a.received as [AgentRequest, AgentRequest];
    const tampered = first.body.slice();
    tampered[1234] = (tampered[1234]! + 1) & 0xff;
    const flipped = await verifyUpload(first, tampered);
    expect(flipped.ok || flipped.error.code).toBe("relay_signature_invalid");
    const swapped = await verifyUpload({ ...first, trailer: second.trailer! });
    expect(swapped.ok || swapped.error.code).toBe("relay_signature_invalid");
    const { trailer: _dropped, ...bare } = second;
    const none = await verifyUpload(bare);
    expect(none.ok || none.error.code).toBe("relay_signature_invalid");
  });

  it("the DO sends no more than the agent's credit window ahead of what the agent read", {
    timeout: 60_000,
  }, async () => {
    const a = await uploader();
    a.creditUploads = false;
    const pending = put(pattern(12 * MiB));
    // Without credit the upload fills the window (to within a chunk that would not fit)…
    const nearly = (n: number) => () => a.uploadBytes > n - TUNNEL_CHUNK_BYTES;
    await waitFor("a full window", nearly(TUNNEL_INITIAL_WINDOW_BYTES), 10_000, 5);
    await waitFor("the upload's id", () => a.uploading().length === 1, 5000, 5);
    const id = a.uploading()[0]!;
    // …and a credit lets that much more through.
    a.creditUpload(id, MiB);
    await waitFor("one more MiB", nearly(TUNNEL_INITIAL_WINDOW_BYTES + MiB), 10_000, 5);
    a.creditUploads = true;
    a.creditUpload(id, a.uploadBytes - a.uploadCredited);
    expect((await pending).status).toBe(200);
    expect(a.uploadBytes).toBe(12 * MiB);
    // Never more in flight than the window, at any chunk.
    expect(a.maxUncredited).toBeLessThanOrEqual(TUNNEL_INITIAL_WINDOW_BYTES);
  });

  it("past its buffered-bytes budget the DO answers 503 tunnel_busy (retryable); a finished upload frees its share", {
    timeout: 60_000,
  }, async () => {
    const a = await uploader();
    a.creditUploads = false;
    const slots = TUNNEL_BUFFER_BUDGET_BYTES / TUNNEL_INITIAL_WINDOW_BYTES;
    // Two chunks and a bit: the edge reads whole chunks and holds the end mark's length back,
    // so each upload gets exactly its first chunk to the agent while its body stays open.
    const open = Array.from({ length: slots }, () => openBody(new Uint8Array(2 * TUNNEL_CHUNK_BYTES + 1024)));
    const held = open.map((o) => put(o.stream));
    await waitFor(
      `${slots} uploads in flight`,
      () => a.uploadBytes === slots * TUNNEL_CHUNK_BYTES,
      10_000,
      5,
    );
    const refused = await put(new Uint8Array(10));
    expect(refused.headers.get("Retry-After")).toBe("1");
    await expectError(refused, 503, "tunnel_busy");
    a.creditUploads = true;
    for (const o of open) o.release();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect((await put(new Uint8Array(10))).status).toBe(200);
  });

  it("over its budget with responses already streaming, the DO cuts the one holding the most; the rest go on", {
    timeout: 120_000,
  }, async () => {
    // Four responses whose clients do not read, asked of the DO directly (the Worker would read
    // ahead): 21 + 20 MiB streaming, 4 MiB finished but unread (it still counts), then 6 more
    // crosses 48 MiB — the 21 MiB one is cut. Without the finished one counted: 47, no cut.
    const sizes: Record<string, number> = { a: 21 * MiB, b: 20 * MiB, c: 4 * MiB, d: 6 * MiB };
    const ids: Record<string, string> = {};
    const a = await connectAgent("eu-1", (r, ag) => {
      const name = r.frame.path.slice(-1);
      ids[name] = r.frame.id;
      // Sent whole but never ended (c: ended): a response in progress.
      if (name === "c") return ag.respond(r.frame.id, new Response(pattern(sizes[name]!)));
      return ag.respondUnfinished(r.frame.id, new Response(pattern(sizes[name]!))).then(() => {});
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const stub = env.TUNNEL.get(env.TUNNEL.idFromName("eu-1"));
    const open: Record<string, Response> = {};
    for (const name of ["a", "b", "c", "d"]) {
      open[name] = await stub.fetch(`${TUNNEL_ORIGIN}/v1/slow/${name}`, {
        headers: { [TUNNEL_HEADERS.idleMs]: "0" },
      });
      expect(open[name]!.status).toBe(200);
      await waitFor(`${name} sent`, () => ids[name] !== undefined, 10_000, 5);
    }
    await waitFor("the largest cut: its agent told to stop", () => a.cancelled.includes(ids.a!), 20_000, 5);
    expect(a.cancelled).toEqual([ids.a]);
    // Its client gets an error, not the queued bytes (they were dropped, not delivered): what
    // arrives is at most what the runtime's pipe had taken before the cut.
    const reader = open.a!.body!.getReader();
    let gotA = 0;
    const endA = await (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        gotA += value.byteLength;
      }
    })().catch((e: unknown) => e);
    expect(endA).toBeInstanceOf(Error);
    expect(gotA).toBeLessThan(sizes.a! / 2);
    // The others go on: c arrives whole, and so do d's bytes so far.
    expect((await open.c!.arrayBuffer()).byteLength).toBe(sizes.c);
    const d = open.d!.body!.getReader();
    let got = 0;
    while (got < sizes.d!) {
      const { value, done } = await d.read();
      if (done) break;
      got += value.byteLength;
    }
    expect(got).toBe(sizes.d);
    await d.cancel();
    await open.b!.body?.cancel();
  });

  it("the budget is exact: response bytes that reach it are queued, one byte more cuts before it is queued", {
    timeout: 120_000,
  }, async () => {
    // Chunks that come before their head wait in the DO whole (no client pulls them yet), so the
    // DO's count is exactly what was sent: x and y each half the budget, then one byte more of y.
    const ids: Record<string, string> = {};
    const a = await connectAgent("eu-1", (r) => {
      ids[r.frame.path.slice(-1)] = r.frame.id;
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const stub = env.TUNNEL.get(env.TUNNEL.idFromName("eu-1"));
    const stats = async (): Promise<TunnelStats> =>
      (await stub.fetch(`${TUNNEL_ORIGIN}${TUNNEL_STATS_PATH}`)).json();
    const asked = Object.fromEntries(
      ["x", "y"].map((name) => [name, stub.fetch(`${TUNNEL_ORIGIN}/v1/slow/${name}`)]),
    );
    await waitFor("both requests at the agent", () => ids.x !== undefined && ids.y !== undefined, 10_000, 5);
    const half = TUNNEL_BUFFER_BUDGET_BYTES / 2;
    const seqs: Record<string, number> = { x: 0, y: 0 };
    const send = (name: string, size: number) => {
      for (let at = 0; at < size; at += TUNNEL_CHUNK_BYTES)
        a.sendChunk(ids[name]!, seqs[name]!++, pattern(Math.min(TUNNEL_CHUNK_BYTES, size - at)));
    };
    send("x", half);
    send("y", half);
    await waitFor(
      "the budget full",
      async () => (await stats()).bufferedBytes === TUNNEL_BUFFER_BUDGET_BYTES,
      20_000,
      10,
    );
    expect(a.cancelled).toEqual([]);
    send("y", 1);
    await waitFor("y cut: its agent told to stop", () => a.cancelled.length > 0, 10_000, 5);
    expect(a.cancelled).toEqual([ids.y]);
    await expectError(await asked.y!, 503, "tunnel_busy");
    const after = await stats();
    // Never above the budget, not even by the byte that crossed it; y's bytes are gone.
    expect(after.peakBufferedBytes).toBe(TUNNEL_BUFFER_BUDGET_BYTES);
    expect(after.bufferedBytes).toBe(half);
    // x goes on: its head and end arrive, its client gets every byte.
    a.send({ type: "response", id: ids.x!, status: 200, headers: [] });
    a.send({ type: "end", id: ids.x!, chunks: seqs.x! });
    const x = await asked.x!;
    expect(x.status).toBe(200);
    expect((await x.arrayBuffer()).byteLength).toBe(half);
    await waitFor("nothing held", async () => (await stats()).bufferedBytes === 0, 10_000, 10);
  });

  it("every response gives back what it took: after 20 concurrent 1 MiB answers (listings read whole, file reads left mid-answer) the DO's accounting is at zero", {
    timeout: 60_000,
  }, async () => {
    const page = pattern(MiB);
    // Listings (JSON: the Worker reads each whole); every fourth answer is a file read that never
    // ends (an agent still sending), whose client leaves after one chunk.
    const a = await connectAgent("eu-1", async (r, ag) => {
      const i = Number(r.request.headers.get("x-client-request-id")?.slice("list-".length));
      if (i % 4 === 0) {
        const file = new Response(page, { headers: { "content-type": "application/octet-stream" } });
        await ag.respondUnfinished(r.frame.id, file);
      } else {
        await ag.respond(r.frame.id, new Response(page, { headers: { "content-type": "application/json" } }));
      }
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const stub = env.TUNNEL.get(env.TUNNEL.idFromName("eu-1"));
    const stats = async (): Promise<TunnelStats> =>
      (await stub.fetch(`${TUNNEL_ORIGIN}${TUNNEL_STATS_PATH}`)).json();
    const token = await tenantToken({ tenant: "t-list", scope: "sandbox:exec" });
    const list = async (i: number) => {
      const res = await SELF.fetch(`${BASE}/v1/sandboxes/sb.eu-1.default.${RAND}/files/deep?recursive=1`, {
        headers: auth(token, { "X-Request-Id": `list-${i}` }),
      });
      expect(res.status).toBe(200);
      if (i % 4 === 0) {
        const reader = res.body!.getReader();
        await reader.read();
        await reader.cancel();
        return;
      }
      expect((await res.arrayBuffer()).byteLength).toBe(MiB);
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => list(i)));
    await waitFor("nothing pending", async () => (await stats()).pending === 0, 10_000, 10);
    expect(await stats()).toEqual(expect.objectContaining(TUNNEL_IDLE));
  });

  it("over MAX_FILE_BYTES while streaming (no Content-Length): 413, and the agent's request is cancelled", {
    timeout: 180_000,
  }, async () => {
    const a = await uploader();
    const limit = 64 * MiB;
    let sent = 0;
    const chunk = new Uint8Array(MiB);
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent > limit) return c.close();
        sent += chunk.byteLength;
        c.enqueue(chunk);
      },
    });
    await expectError(await put(body), 413, "payload_too_large");
    // The agent never got a complete body (no end, no trailer), and was told to stop.
    expect(a.received.length).toBe(0);
    await waitFor("the agent told to cancel", () => a.cancelled.length === 1, 5000, 5);
    expect(a.uploadBytes).toBeLessThanOrEqual(limit);
  });
});
