/**
 * The floor of the edge's relay: a bare Worker → Durable Object → WebSocket → Node client → back
 * round trip in workerd (Miniflare), with none of the edge's work (no JWT, quota, signing, frames
 * codec). The Node side answers each message at once; the Worker waits for that answer.
 */
import { Miniflare } from "miniflare";
import WebSocket from "ws";

const SCRIPT = `
import { DurableObject } from "cloudflare:workers";
export class Relay extends DurableObject {
  waiters = new Map();
  seq = 0;
  async fetch(request) {
    if (request.headers.get("Upgrade") === "websocket") {
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1]);
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    const ws = this.ctx.getWebSockets()[0];
    if (!ws) return new Response("no client", { status: 503 });
    const id = String(++this.seq);
    const answer = new Promise((resolve) => this.waiters.set(id, resolve));
    ws.send(JSON.stringify({ id, body: await request.text() }));
    return new Response(await answer);
  }
  async webSocketMessage(ws, message) {
    const { id, body } = JSON.parse(message);
    this.waiters.get(id)?.(body);
    this.waiters.delete(id);
  }
}
export default {
  fetch(request, env) {
    return env.RELAY.get(env.RELAY.idFromName("one")).fetch(request);
  },
};
`;

/** `n` sequential round trips (after a warm-up), each timed from the client's fetch to its body. */
export async function bareRelaySamples(n: number): Promise<number[]> {
  const mf = new Miniflare({
    modules: true,
    script: SCRIPT,
    compatibilityDate: "2026-04-01",
    durableObjects: { RELAY: "Relay" },
    host: "127.0.0.1",
    port: 0,
    cf: false,
    verbose: false,
  });
  try {
    const url = (await mf.ready).toString().replace(/\/$/, "");
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/connect`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.on("message", (data) => ws.send(data.toString()));
    const out: number[] = [];
    const body = JSON.stringify({ command: "true" });
    for (let i = 0; i < n + 10; i++) {
      const t0 = performance.now();
      const res = await fetch(`${url}/relay`, { method: "POST", body, signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200 || text !== body)
        throw new Error(`bare relay: HTTP ${res.status} ${text.slice(0, 100)}`);
      if (i >= 10) out.push(ms);
    }
    ws.close();
    return out;
  } finally {
    await mf.dispose();
  }
}
