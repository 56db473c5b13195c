import { ExecRequestSchema, ExecResultSchema } from "../../shared/api.ts";
import { parseOrError } from "../../shared/errors.ts";
import type { RouteDef } from "../app-env.ts";
import { encodeJson, readJson, wantsEventStream } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { clientHeaders, regionOrder } from "../relay/from-context.ts";
import { relayToRegions } from "../relay/relay.ts";

/** POST /v1/exec: validate here, run in a sandbox of the chosen region via its agents. */
export const execRoute: RouteDef = {
  method: "POST",
  path: "/v1/exec",
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary: "Run one command in a fresh sandbox; `Accept: text/event-stream` streams its output",
    tags: ["exec"],
    request: ExecRequestSchema,
    response: ExecResultSchema,
    sse: true,
  },
  async handler(c) {
    const parsed = parseOrError(ExecRequestSchema, readJson(c), "exec request");
    if (!parsed.ok) throw parsed.error;
    const sse = wantsEventStream(c);
    const { config, tunnels } = c.get("deps");
    const out = await relayToRegions(config, tunnels, {
      method: "POST",
      path: "/v1/exec",
      // The validated request (defaults filled in) is what gets signed and run.
      body: encodeJson(parsed.value),
      headers: clientHeaders(c, sse ? "text/event-stream" : "application/json"),
      principal: c.get("principal"),
      requestId: c.get("requestId"),
      regions: regionOrder(c),
      timeoutMs: parsed.value.timeoutSeconds * 1000 + config.relayTimeoutMs,
      signal: c.req.raw.signal,
      spans: c.get("spans"),
    });
    return finishRelay(c, out, { addRegion: !sse });
  },
};
