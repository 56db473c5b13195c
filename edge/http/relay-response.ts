import type { AppContext } from "../app-env.ts";
import { TUNNEL_HEADERS } from "../relay/protocol.ts";
import { REGION_HEADER } from "../relay/regions.ts";
import type { RelayOutcome } from "../relay/relay.ts";

/**
 * Turn a relay outcome into the client's response: the region that answered in a header, the
 * internal tunnel headers dropped, the body passed on unread. The agent puts `region` in its own
 * answers (JSON and the streamed `result`), so nothing here parses a body. A JSON answer is read
 * whole before its head goes out (timed as `edge-body`): it is small, it then has a
 * Content-Length, and a tunnel that fails mid-body is an error answer instead of truncated JSON.
 */
export async function finishRelay(c: AppContext, out: RelayOutcome): Promise<Response> {
  const src = out.response;
  const headers = new Headers(src.headers);
  for (const h of Object.values(TUNNEL_HEADERS)) headers.delete(h);
  headers.set(REGION_HEADER, out.region);
  headers.set("X-Request-Id", c.get("requestId"));
  if ((headers.get("Content-Type") ?? "").includes("application/json") && src.body) {
    // The head came with edge-tunnel; the body's frames follow it.
    const body = await c.get("spans").time("edge-body", () => src.arrayBuffer());
    headers.delete("Content-Length");
    return new Response(body, { status: src.status, headers });
  }
  return new Response(src.body, { status: src.status, headers });
}
