import { ExecRequestSchema, ExecResultSchema } from "../../shared/api.ts";
import { parseOrError } from "../../shared/errors.ts";
import type { RouteDef } from "../app-env.ts";
import { encodeJson, readJson, wantsEventStream } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { relayFrom } from "../relay/from-context.ts";

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
    const out = await relayFrom(c, {
      method: "POST",
      path: "/v1/exec",
      // The validated request (defaults filled in) is what gets signed and run.
      body: encodeJson(parsed.value),
      accept: sse ? "text/event-stream" : "application/json",
      timeoutMs: parsed.value.timeoutSeconds * 1000 + c.get("deps").config.relayTimeoutMs,
    });
    return finishRelay(c, out);
  },
};
