import { env, SELF } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import { parseServerTiming } from "../../shared/spans.ts";
import {
  auth,
  BASE,
  closeAgents,
  connectAgent,
  type TestAgent,
  tenantToken,
  waitForAgents,
} from "./support.ts";

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1"]));

const result = {
  requestId: "set-by-agent",
  pod: "pod-1",
  exitCode: 0,
  signal: null,
  timedOut: false,
  truncated: false,
  stdout: "",
  stderr: "",
  stdoutBytes: 0,
  stderrBytes: 0,
  durationMs: 3,
  queueMs: 1,
};

async function exec(tenant: string, headers: Record<string, string> = {}) {
  const token = await tenantToken({ tenant, scope: "sandbox:exec" });
  return SELF.fetch(`${BASE}/v1/exec`, {
    method: "POST",
    headers: auth(token, { "Content-Type": "application/json", ...headers }),
    body: JSON.stringify({ command: "true" }),
  });
}

/** Names in the response's Server-Timing header, which must parse as a whole. */
function timing(res: Response): Map<string, number> {
  const header = res.headers.get("Server-Timing");
  expect(header, "Server-Timing header").toBeTruthy();
  const spans = parseServerTiming(header);
  expect(spans.length, `parsable Server-Timing: ${header}`).toBeGreaterThan(0);
  return new Map(spans.map((s) => [s.name, s.dur]));
}

describe("Server-Timing", () => {
  it("a relayed exec carries the edge's spans and the agent's, prefixed agent-", async () => {
    const a = await connectAgent("eu-1", async (r, ag) => {
      await ag.respond(
        r.frame.id,
        Response.json(result, { headers: { "server-timing": "verify;dur=0.5, exec;dur=2.25, total;dur=3" } }),
      );
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec("tenant-st");
    expect(res.status).toBe(200);
    await res.json();
    const t = timing(res);
    for (const name of [
      "edge-flood",
      "edge-auth",
      "edge-quota",
      "edge-region",
      "edge-sign",
      "edge-tunnel",
      "edge-total",
    ]) {
      expect(t.has(name), `${name} in ${[...t.keys()]}`).toBe(true);
    }
    expect(t.get("agent-verify")).toBe(0.5);
    expect(t.get("agent-exec")).toBe(2.25);
    expect(t.get("agent-total")).toBe(3);
    // The agent's raw names never reach the client.
    expect(t.has("exec")).toBe(false);
  });

  it("a malformed agent header is ignored: the edge's own spans still go out", async () => {
    const a = await connectAgent("eu-1", async (r, ag) => {
      await ag.respond(
        r.frame.id,
        Response.json(result, { headers: { "server-timing": 'exec;dur=NaN, <script>;desc="x' } }),
      );
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec("tenant-st-bad");
    expect(res.status).toBe(200);
    await res.json();
    const t = timing(res);
    expect(t.has("edge-tunnel")).toBe(true);
    expect([...t.keys()].some((n) => n.startsWith("agent-"))).toBe(false);
  });

  it("error responses carry it too (401 before any relay, 404)", async () => {
    const unauth = await SELF.fetch(`${BASE}/v1/exec`, { method: "POST", body: "{}" });
    expect(unauth.status).toBe(401);
    const t = timing(unauth);
    expect(t.has("edge-total")).toBe(true);
    expect(t.has("edge-tunnel")).toBe(false);
    const missing = await SELF.fetch(`${BASE}/nope`);
    expect(missing.status).toBe(404);
    expect(timing(missing).has("edge-total")).toBe(true);
  });

  it("a streamed exec carries the spans before its body (no agent body spans yet)", async () => {
    const a = await connectAgent("eu-1", async (r, ag) => {
      await ag.respond(
        r.frame.id,
        new Response('event: result\ndata: {"type":"result"}\n\n', {
          headers: { "content-type": "text/event-stream", "server-timing": "verify;dur=0.5, total;dur=0.75" },
        }),
      );
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const res = await exec("tenant-st-sse", { Accept: "text/event-stream" });
    expect(res.status).toBe(200);
    const t = timing(res);
    await res.text();
    expect(t.get("agent-verify")).toBe(0.5);
    expect(t.has("edge-tunnel")).toBe(true);
  });
});
