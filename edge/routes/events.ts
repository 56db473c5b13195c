import type { RouteDef } from "../app-env.ts";
import { finishRelay } from "../http/relay-response.ts";
import { type RelaySpec, regionOrder, relayFrom } from "../relay/from-context.ts";
import { mergeSseStreams } from "../relay/merge-sse.ts";
import { connectedAgents, type RelayOutcome } from "../relay/relay.ts";
import { requestedRegions } from "./pool.ts";

/**
 * GET /v1/events — a region's live PoolEvent stream (SSE). Every agent of the region emits the
 * events of the requests IT serves (leases, queue, executions), so the edge subscribes to all of
 * the region's connected agents and merges their streams: one agent's stream alone would miss
 * what its sibling replicas do.
 */
/** `?region=all`: one stream of every connected agent of every configured region (events carry `region`). */
export const ALL_REGIONS = "all";

export const eventsRoute: RouteDef = {
  method: "GET",
  path: "/v1/events",
  auth: "tenant",
  scope: "sandbox:admin",
  doc: {
    summary:
      "Live pool events of one region (or `?region=all`), merged from all its agents (SSE: one `snapshot` per agent, then PoolEvent messages)",
    tags: ["admin"],
    responseContentType: "text/event-stream",
    parameters: [
      {
        name: "region",
        in: "query",
        description: "region to watch, or `all` for every region merged (default: nearest, with failover)",
      },
    ],
  },
  async handler(c) {
    const { config, tunnels } = c.get("deps");
    const all = c.req.query("region") === ALL_REGIONS;
    const asked = all ? config.regions : c.req.query("region") !== undefined ? requestedRegions(c) : null;
    const regions = asked ?? regionOrder(c);
    const base: RelaySpec = {
      method: "GET",
      path: "/v1/events",
      accept: "text/event-stream",
      regions,
      timeoutMs: Math.min(config.relayTimeoutMs, 15_000),
      // An event stream may be quiet for long; the agent's keep-alives are not required.
      idleMs: 0,
    };
    // One region: the first (in preference order) with an agent. `all`: every agent of every region.
    for (const group of all ? [regions] : regions.map((r) => [r])) {
      const targets = (
        await Promise.all(
          group.map(async (region) => (await connectedAgents(tunnels, region)).map((a) => ({ region, a }))),
        )
      ).flat();
      if (targets.length === 0) continue;
      // Each relay is signed on its own (its own jti, its region's audience), pinned to one agent connection.
      const outs = await Promise.all(
        targets.map(({ region, a }) => relayFrom(c, { ...base, regions: [region], connection: a.connId })),
      );
      const live = outs.filter((o) => o.response.ok && o.response.body);
      if (live.length === 0) return finishRelay(c, outs[0]!);
      for (const o of outs) if (!live.includes(o)) await o.response.body?.cancel();
      return finishRelay(c, merged(live, all ? ALL_REGIONS : live[0]!.region));
    }
    // No region lists an agent: the ordinary relay answers (no_agent with Retry-After).
    return finishRelay(c, await relayFrom(c, base));
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
