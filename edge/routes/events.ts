import type { RouteDef } from "../app-env.ts";
import { finishRelay } from "../http/relay-response.ts";
import { clientHeaders, regionOrder } from "../relay/from-context.ts";
import { mergeSseStreams } from "../relay/merge-sse.ts";
import { connectedAgents, type RelayInput, type RelayOutcome, relayToRegions } from "../relay/relay.ts";
import { requestedRegions } from "./pool.ts";

/**
 * GET /v1/events — a region's live PoolEvent stream (SSE). Every agent of the region emits the
 * events of the requests IT serves (leases, queue, executions), so the edge subscribes to all of
 * the region's connected agents and merges their streams: one agent's stream alone would miss
 * what its sibling replicas do.
 */
export const eventsRoute: RouteDef = {
  method: "GET",
  path: "/v1/events",
  auth: "tenant",
  scope: "sandbox:admin",
  doc: {
    summary:
      "Live pool events of one region, merged from all its agents (SSE: one `snapshot` per agent, then PoolEvent messages)",
    tags: ["admin"],
    responseContentType: "text/event-stream",
    parameters: [
      { name: "region", in: "query", description: "region to watch (default: nearest, with failover)" },
    ],
  },
  async handler(c) {
    const { config, tunnels } = c.get("deps");
    const asked = c.req.query("region") !== undefined ? requestedRegions(c) : null;
    const regions = asked ?? regionOrder(c);
    const base = (): RelayInput => ({
      method: "GET",
      path: "/v1/events",
      body: null,
      headers: clientHeaders(c, "text/event-stream"),
      principal: c.get("principal"),
      requestId: c.get("requestId"),
      regions,
      timeoutMs: Math.min(config.relayTimeoutMs, 15_000),
      // An event stream may be quiet for long; the agent's keep-alives are not required.
      idleMs: 0,
    });
    for (const region of regions) {
      const agents = await connectedAgents(tunnels, region);
      if (agents.length === 0) continue;
      // Each relay is signed on its own (its own jti), pinned to one agent connection.
      const outs = await Promise.all(
        agents.map((a) =>
          relayToRegions(config, tunnels, { ...base(), regions: [region], connection: a.connId }),
        ),
      );
      const live = outs.filter((o) => o.response.ok && o.response.body);
      if (live.length === 0) return finishRelay(c, outs[0]!);
      for (const o of outs) if (!live.includes(o)) await o.response.body?.cancel();
      return finishRelay(c, merged(live, region));
    }
    // No region lists an agent: the ordinary relay answers (no_agent with Retry-After).
    return finishRelay(c, await relayToRegions(config, tunnels, base()));
  },
};

function merged(outs: RelayOutcome[], region: string): RelayOutcome {
  const first = outs[0]!;
  if (outs.length === 1) return first;
  const body = mergeSseStreams(outs.map((o) => o.response.body!));
  const headers = new Headers(first.response.headers);
  headers.delete("Content-Length");
  return { region, response: new Response(body, { status: 200, headers }) };
}
