import type { AppContext } from "../app-env.ts";
import { TUNNEL_HEADERS } from "../durable/tunnel.ts";
import { REGION_HEADER } from "../relay/regions.ts";
import type { RelayOutcome } from "../relay/relay.ts";

/**
 * Turn a relay outcome into the client's response: the region reported in a header (and in a
 * JSON object body when `addRegion`), internal tunnel headers dropped, streams passed through.
 */
export async function finishRelay(
  c: AppContext,
  out: RelayOutcome,
  opts: { addRegion?: boolean; extra?: Record<string, unknown> } = {},
): Promise<Response> {
  const src = out.response;
  const headers = new Headers(src.headers);
  for (const h of Object.values(TUNNEL_HEADERS)) headers.delete(h);
  headers.set(REGION_HEADER, out.region);
  headers.set("X-Request-Id", c.get("requestId"));
  const isJson = (headers.get("Content-Type") ?? "").includes("application/json");
  if (isJson && src.ok && (opts.addRegion || opts.extra)) {
    // The head came with edge-tunnel; the body's frames follow it.
    const body: unknown = await c.get("spans").time("edge-body", () => src.json());
    if (body && typeof body === "object" && !Array.isArray(body)) {
      const merged = { ...(body as Record<string, unknown>), ...opts.extra, region: out.region };
      headers.delete("Content-Length");
      return new Response(JSON.stringify(merged), { status: src.status, headers });
    }
    return new Response(JSON.stringify(body), { status: src.status, headers });
  }
  return new Response(src.body, { status: src.status, headers });
}
