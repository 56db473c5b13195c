import { createRelayAuth } from "./cluster-agent/http/relay-auth.ts";
import { startTunnelClient } from "./cluster-agent/tunnel/client.ts";
import { startEdge, testAgentKeys, testTenantToken } from "./test/support/edge-harness.ts";
const edge = await startEdge();
const keys = testAgentKeys("eu-1");
const auth = createRelayAuth({ region: "eu-1", publicKeys: keys.relayPublicKeys });
const handler = async (req: Request) => { const c = await auth(req); return Response.json({ ok: c.ok, requestId: "x", pod: "p", exitCode: 0, signal: null, timedOut: false, truncated: false, stdout: "", stderr: "", stdoutBytes: 0, stderrBytes: 0, durationMs: 0, queueMs: 0 }); };
const client = startTunnelClient({ edgeUrl: edge.url, region: "eu-1", agentId: "bench", privateJwk: keys.agentPrivateJwk, handler, capacity: () => ({ ready: 8, leased: 0, queued: 0, poolSize: 8 }) });
await client.waitOpen();
const token = await testTenantToken({ tenant: "bench" });
// quota is 20 burst: use a fresh tenant token per 15 requests
const lat: number[] = []; const direct: number[] = [];
for (let i = 0; i < 150; i++) {
  const t = await testTenantToken({ tenant: `bench-${Math.floor(i / 15)}` });
  const t0 = performance.now();
  const r = await fetch(`${edge.url}/v1/exec`, { method: "POST", headers: { Authorization: `Bearer ${t}`, "Content-Type": "application/json" }, body: '{"command":"true"}' });
  await r.json(); if (r.status !== 200) console.log(r.status);
  lat.push(performance.now() - t0);
}
const srv = (await import("node:http")).createServer(async (req, res) => { res.setHeader("content-type","application/json"); res.end('{"ok":true}'); });
await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
const port = (srv.address() as { port: number }).port;
for (let i = 0; i < 150; i++) { const t0 = performance.now(); const r = await fetch(`http://127.0.0.1:${port}/v1/exec`, { method: "POST", body: '{"command":"true"}' }); await r.json(); direct.push(performance.now() - t0); }
const q = (a: number[], p: number) => { const s = [...a].slice(20).sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(2); };
console.log(`edge path p50 ${q(lat, 0.5)} ms p99 ${q(lat, 0.99)} ms; direct http p50 ${q(direct, 0.5)} ms p99 ${q(direct, 0.99)} ms`);
void token; srv.close(); await client.close(); await edge.close();
