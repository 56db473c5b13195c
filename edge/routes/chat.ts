import {
  type ChatHistoryMessage,
  ChatRequestSchema,
  ChatResponseSchema,
  type RelayChatRequest,
} from "../../shared/api.ts";
import { parseOrError } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { encodeJson, readJson, wantsEventStream } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { clientHeaders, regionOrder } from "../relay/from-context.ts";
import { relayToRegions } from "../relay/relay.ts";

/** A chat turn may run several commands; it gets this many relay timeouts. */
const CHAT_TIMEOUT_FACTOR = 5;

/**
 * POST /v1/chat: load the session's history from its SessionDO, relay a RelayChatRequest to an
 * agent (which runs the model loop), and append the turn to the session when the agent finishes.
 */
async function chat(c: AppContext): Promise<Response> {
  const parsed = parseOrError(ChatRequestSchema, readJson(c), "chat request");
  if (!parsed.ok) throw parsed.error;
  const { config, tunnels, sessions } = c.get("deps");
  const { tenant } = c.get("principal");
  const requestId = c.get("requestId");
  const sessionId = parsed.value.sessionId ?? crypto.randomUUID();
  const history = await sessions.history(tenant, sessionId, 200);
  const relayBody: RelayChatRequest = { message: parsed.value.message, sessionId, history };
  const sse = wantsEventStream(c);
  const out = await relayToRegions(config, tunnels, {
    method: "POST",
    path: "/v1/chat",
    body: encodeJson(relayBody),
    headers: clientHeaders(c, sse ? "text/event-stream" : "application/json"),
    principal: c.get("principal"),
    requestId,
    regions: regionOrder(c),
    timeoutMs: config.relayTimeoutMs * CHAT_TIMEOUT_FACTOR,
  });
  const turn = (reply: string): ChatHistoryMessage[] => [
    { role: "user", content: parsed.value.message },
    { role: "assistant", content: reply },
  ];

  if (!out.response.ok || !out.response.body) return finishRelay(c, out);
  if (sse) {
    // Tee the stream: the client gets it as is; the copy is scanned for the final `done` event.
    const [toClient, toScan] = out.response.body.tee();
    const saving = scanForDone(toScan).then((reply) =>
      reply === null ? undefined : sessions.append(tenant, sessionId, requestId, turn(reply)),
    );
    waitUntil(c, saving);
    return finishRelay(c, { ...out, response: new Response(toClient, out.response) });
  }
  const body: unknown = await out.response
    .clone()
    .json()
    .catch(() => null);
  const result = ChatResponseSchema.safeParse(body);
  if (result.success) await sessions.append(tenant, sessionId, requestId, turn(result.data.reply));
  return finishRelay(c, out, { addRegion: true, extra: { sessionId } });
}

function waitUntil(c: AppContext, p: Promise<unknown>): void {
  const guarded = p.catch(() => undefined);
  try {
    c.executionCtx.waitUntil(guarded);
  } catch {
    // no execution context (app.fetch without one): the promise still runs
  }
}

/** The reply of the SSE `done` event, or null if the stream ended without one. */
async function scanForDone(stream: ReadableStream<Uint8Array>): Promise<string | null> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let reply: string | null = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (value) buf += value;
    let cut = buf.indexOf("\n\n");
    while (cut >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      try {
        const ev = JSON.parse(data) as { type?: unknown; response?: unknown };
        const res = ChatResponseSchema.safeParse(ev.response);
        if (ev.type === "done" && res.success) reply = res.data.reply;
      } catch {
        // not JSON: not ours
      }
      cut = buf.indexOf("\n\n");
    }
    if (done) return reply;
  }
}

const doc: RouteDef["doc"] = {
  summary: "One chat turn with the sandbox agent; `Accept: text/event-stream` streams ChatEvents",
  tags: ["chat"],
  request: ChatRequestSchema,
  response: ChatResponseSchema,
  sse: true,
};

export const chatRoute: RouteDef = {
  method: "POST",
  path: "/v1/chat",
  auth: "tenant",
  scope: "sandbox:chat",
  body: true,
  doc,
  handler: chat,
};

/** Alias kept for clients of the original API. */
export const chatAliasRoute: RouteDef = {
  ...chatRoute,
  path: "/chat",
  doc: { ...doc, summary: `${doc.summary} (alias)` },
};
