import { CancelResultSchema, ClientRequestIdSchema, SCOPES } from "../../shared/api.ts";
import { AppError, parseOrError } from "../../shared/errors.ts";
import type { RouteDef } from "../app-env.ts";
import { cancelInRegions } from "../relay/relay.ts";

/**
 * POST /v1/requests/:id/cancel — stop the caller's own in-flight request that it sent with
 * `X-Request-Id: <id>`: its command is killed and its lease freed, as when a streaming client goes
 * away. It exists because nothing in HTTP/1.1 tells a server that a client waiting for a response
 * head has left (workerd notices only when a write fails), so a non-streamed caller that gives up
 * must say so. Another tenant's request with the same id is never touched (the key holds the tenant).
 */
export const cancelRequestRoute: RouteDef = {
  method: "POST",
  path: "/v1/requests/:id/cancel",
  auth: "tenant",
  // The requests it stops are exec or chat requests: a token that may send neither may stop neither.
  scope: [SCOPES.exec, SCOPES.chat],
  doc: {
    summary:
      "Cancel your in-flight request that you sent with `X-Request-Id: {id}` (its command is killed, its lease freed)",
    tags: ["exec"],
    response: CancelResultSchema,
    parameters: [
      { name: "id", in: "path", required: true, description: "the X-Request-Id you sent with the request" },
    ],
  },
  async handler(c) {
    const parsed = parseOrError(ClientRequestIdSchema, c.req.param("id") ?? "", "request id");
    if (!parsed.ok) throw parsed.error;
    const { config, tunnels } = c.get("deps");
    const cancelled = await cancelInRegions(tunnels, config.regions, c.get("principal").tenant, parsed.value);
    if (cancelled === 0)
      throw new AppError("request_not_found", `no request ${parsed.value} of yours is in flight`);
    return c.json(CancelResultSchema.parse({ requestId: parsed.value, cancelled }));
  },
};
