import { describe, expect, it } from "vitest";
import { backoffDelay, tunnelUrl } from "../../cluster-agent/tunnel/client.ts";
import { generateSigningKeyPair } from "../../shared/jwt-keys.ts";
import {
  ChunkSequencer,
  chunkBytes,
  DATA_KIND,
  decodeDataFrame,
  decodeFrame,
  encodeDataFrame,
  encodeFrame,
  fromBase64,
  headersToPairs,
  pairsToHeaders,
  signAgentToken,
  TUNNEL_CHUNK_BYTES,
  TUNNEL_MAX_FRAME_BYTES,
  toBase64,
  verifyAgentToken,
} from "../../shared/tunnel.ts";

describe("tunnel frames", () => {
  it("round-trip every frame type and refuse unknown shapes", () => {
    const frames = [
      { type: "request", id: "1", method: "POST", path: "/v1/exec?x=1", headers: [["a", "b"]], body: "eA==" },
      { type: "response", id: "1", status: 200, headers: [["content-type", "application/json"]] },
      { type: "end", id: "1", chunks: 1 },
      { type: "ws-close", id: "1", code: 1000, reason: "bye", messages: 3 },
      { type: "request", id: "2", method: "GET", path: "/v1/x/tty", headers: [], websocket: true },
      { type: "error", id: "1", code: "tunnel_closed", message: "gone" },
      { type: "cancel", id: "1" },
      { type: "credit", id: "1", bytes: 1048576 },
      {
        type: "heartbeat",
        agentId: "a",
        region: "eu-1",
        capacity: { ready: 1, leased: 2, queued: 0, poolSize: 3 },
      },
    ] as const;
    for (const f of frames) {
      const d = decodeFrame(encodeFrame(f as Parameters<typeof encodeFrame>[0]));
      expect(d.ok && d.value).toEqual(f);
    }
    expect(decodeFrame("{").ok).toBe(false);
    expect(decodeFrame('{"type":"nope","id":"1"}').ok).toBe(false);
    expect(decodeFrame('{"type":"error","id":"1","code":"made_up","message":"x"}').ok).toBe(false);
    // Body chunks are binary data frames now: a JSON chunk is an unknown shape.
    expect(decodeFrame('{"type":"chunk","id":"1","seq":0,"data":""}').ok).toBe(false);
    expect(decodeFrame('{"type":"ws-close","id":"1","code":999,"reason":"","messages":0}').ok).toBe(false);
  });

  it("binary data frames round-trip with a 6 + id bytes header, and refuse malformed ones", () => {
    const id = crypto.randomUUID();
    const bytes = new Uint8Array(TUNNEL_CHUNK_BYTES).map((_, i) => i & 0xff);
    const frame = encodeDataFrame(DATA_KIND.chunk, id, 0xfffffffe, bytes);
    expect(frame.byteLength).toBe(6 + id.length + bytes.byteLength);
    expect(frame.byteLength).toBeLessThanOrEqual(TUNNEL_MAX_FRAME_BYTES);
    const d = decodeDataFrame(frame);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.value.kind).toBe(DATA_KIND.chunk);
    expect(d.value.id).toBe(id);
    expect(d.value.seq).toBe(0xfffffffe);
    expect(d.value.bytes).toEqual(bytes);
    // The payload is a view, not a copy.
    expect(d.value.bytes.buffer).toBe(frame.buffer);
    // An empty message (a session may send one) still decodes.
    const empty = decodeDataFrame(encodeDataFrame(DATA_KIND.wsText, "x", 0, new Uint8Array(0)));
    expect(empty.ok && empty.value.bytes.byteLength).toBe(0);
    const bad = (b: number[]) => decodeDataFrame(new Uint8Array(b)).ok;
    expect(bad([9, 1, 0x41, 0, 0, 0, 0])).toBe(false); // unknown kind
    expect(bad([1, 0, 0, 0, 0, 0, 0])).toBe(false); // empty id
    expect(bad([1, 200, 0x41, 0, 0, 0, 0])).toBe(false); // id longer than the frame
    expect(bad([1, 1, 0x20, 0, 0, 0, 0])).toBe(false); // id not printable
    expect(bad([1, 1, 0x41, 0, 0])).toBe(false); // too short
    expect(() => encodeDataFrame(DATA_KIND.chunk, "é", 0, bytes)).toThrow();
    expect(() => encodeDataFrame(DATA_KIND.chunk, "a", -1, bytes)).toThrow();
  });

  it("base64 and chunking are lossless", () => {
    const bytes = new Uint8Array(300_001).map((_, i) => (i * 13) & 0xff);
    const back = fromBase64(toBase64(bytes));
    expect(back.length).toBe(bytes.length);
    expect(back.every((v, i) => v === bytes[i])).toBe(true);
    expect(toBase64(new Uint8Array([1, 2]))).toBe("AQI=");
    const parts = [...chunkBytes(bytes)];
    expect(parts.map((p) => p.length)).toEqual([131072, 131072, 37857]);
  });

  it("drops hop-by-hop headers, keeps repeated ones", () => {
    const h = new Headers([
      ["content-type", "text/plain"],
      ["connection", "close"],
      ["transfer-encoding", "chunked"],
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
    ]);
    const pairs = headersToPairs(h);
    expect(pairs.map(([k]) => k)).not.toContain("connection");
    expect(pairs.map(([k]) => k)).not.toContain("transfer-encoding");
    expect(pairsToHeaders(pairs).getSetCookie()).toEqual(["a=1", "b=2"]);
  });
});

describe("ChunkSequencer", () => {
  const b = (n: number) => new Uint8Array([n]);
  it("delivers in order whatever the arrival order, and knows when it is complete", () => {
    const s = new ChunkSequencer();
    expect(s.push(2, b(2))).toEqual({ ok: true, value: [] });
    expect(s.end(4).ok).toBe(true);
    expect(s.push(0, b(0))).toEqual({ ok: true, value: [b(0)] });
    expect(s.complete).toBe(false);
    expect(s.push(3, b(3))).toEqual({ ok: true, value: [] });
    expect(s.push(1, b(1))).toEqual({ ok: true, value: [b(1), b(2), b(3)] });
    expect(s.complete).toBe(true);
  });
  it("refuses duplicates, chunks past the end, and a second end", () => {
    const s = new ChunkSequencer();
    s.push(0, b(0));
    expect(s.push(0, b(0)).ok).toBe(false);
    expect(s.end(1).ok).toBe(true);
    expect(s.push(1, b(1)).ok).toBe(false);
    expect(s.end(1).ok).toBe(false);
  });
});

describe("agent login token", () => {
  it("verifies for its region only, with the region's keys only", async () => {
    const eu = await generateSigningKeyPair("eu");
    const us = await generateSigningKeyPair("us");
    const token = await signAgentToken({ privateJwk: eu.privateJwk, agentId: "agent-7", region: "eu-1" });
    const good = await verifyAgentToken(token, { publicKeys: [eu.publicJwk], region: "eu-1" });
    // An agent that names no cluster serves the region's "default" cluster (sandbox routing).
    expect(good).toEqual({
      ok: true,
      value: {
        agentId: "agent-7",
        region: "eu-1",
        cluster: "default",
        // The edge remembers the jti until exp, so a captured login cannot dial again.
        jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
        expiresAt: expect.any(Number),
      },
    });
    const otherRegion = await verifyAgentToken(token, { publicKeys: [eu.publicJwk], region: "us-1" });
    expect(otherRegion.ok || otherRegion.error.code).toBe("invalid_token");
    const otherKey = await verifyAgentToken(token, { publicKeys: [us.publicJwk], region: "eu-1" });
    expect(otherKey.ok || otherKey.error.code).toBe("invalid_token");
    expect((await verifyAgentToken(undefined, { publicKeys: [eu.publicJwk], region: "eu-1" })).ok).toBe(
      false,
    );
  });
});

describe("agent login token: cluster", () => {
  it("carries the agent's cluster; a malformed cluster is refused", async () => {
    const eu = await generateSigningKeyPair("eu");
    const login = (privateJwk = eu.privateJwk, cluster?: string) =>
      signAgentToken({ privateJwk, agentId: "a", region: "eu-1", ...(cluster ? { cluster } : {}) });
    const verify = async (token: string, publicJwk = eu.publicJwk as object) =>
      verifyAgentToken(token, { publicKeys: [publicJwk], region: "eu-1" });
    // A key claims a named cluster only when bound to it; unbound, it is "default" only.
    const unbound = await verify(await login(eu.privateJwk, "c-2"));
    expect(unbound.ok || unbound.error.message).toContain('not bound to cluster "c-2"');
    const bound = { ...eu.publicJwk, clusters: ["c-1", "c-2"] };
    const ok = await verify(await login(eu.privateJwk, "c-2"), bound);
    expect(ok.ok && ok.value.cluster).toBe("c-2");
    // A token of a key the region does not know learns nothing about bindings: a plain bad signature.
    const stranger = await generateSigningKeyPair("eu");
    const refusedStranger = await verify(await login(stranger.privateJwk, "c-2"), bound);
    expect(refusedStranger.ok || refusedStranger.error.message).not.toContain("bound");
    const notDefault = await verify(await login(), bound);
    expect(notDefault.ok || notDefault.error.code).toBe("invalid_token");
    const refused = await verify(await login(eu.privateJwk, "Bad.Cluster"), bound);
    expect(refused.ok || refused.error.code).toBe("invalid_token");
  });
});

describe("tunnel client helpers", () => {
  it("builds the tunnel URL from an http(s) or ws(s) base", () => {
    expect(tunnelUrl("https://edge.example.com", "eu-1")).toBe(
      "wss://edge.example.com/v1/tunnel?region=eu-1",
    );
    expect(tunnelUrl("http://127.0.0.1:8787/", "us-1")).toBe("ws://127.0.0.1:8787/v1/tunnel?region=us-1");
  });
  it("backs off exponentially with jitter, capped", () => {
    expect(backoffDelay(0, 100, 10_000, () => 0)).toBe(50);
    expect(backoffDelay(0, 100, 10_000, () => 1)).toBe(100);
    expect(backoffDelay(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelay(20, 100, 10_000, () => 1)).toBe(10_000);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(5, 100, 10_000)));
    expect(spread.size).toBeGreaterThan(10);
  });
});
