import {
  type ChatHistoryMessage,
  ChatRequestSchema,
  type ChatResponse,
  ChatResponseSchema,
  MODEL_CALLS_HEADER,
  type RelayChatRequest,
} from "../../shared/api.ts";
import {
  AppError,
  type ErrorBody,
  ErrorBodySchema,
  errorResponse,
  parseOrError,
} from "../../shared/errors.ts";
import { type SseMessage, SseParser } from "../../shared/sse.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { encodeJson, readJson, wantsEventStream } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { relayFrom } from "../relay/from-context.ts";
import { chatLinkSigner, signResponseLinks, signStreamLinks } from "./chat-links.ts";
import { sandboxWhere } from "./sandboxes.ts";

/** A chat turn may run several commands; it gets this many relay timeouts. */
const CHAT_TIMEOUT_FACTOR = 5;

/**
 * POST /v1/chat: load the session's history from its SessionDO, relay a RelayChatRequest to an
 * agent (which runs the model loop), and append the turn to the session when the agent finishes.
 */
async function chat(c: AppContext): Promise<Response> {
  const parsed = parseOrError(ChatRequestSchema, readJson(c), "chat request");
  if (!parsed.ok) throw parsed.error;
  const { config, sessions } = c.get("deps");
  const { tenant } = c.get("principal");
  const requestId = c.get("requestId");
  const sessionId = parsed.value.sessionId ?? crypto.randomUUID();
  const history = await sessions.history(tenant, sessionId, 200);
  const sessionMode = parsed.value.sandbox === "session";
  const bound = sessionMode ? await sessions.sandboxOf(tenant, sessionId) : null;
  const relayBody: RelayChatRequest = {
    message: parsed.value.message,
    sessionId,
    history,
    ...(sessionMode ? { sessionSandbox: bound ? { id: bound } : {} } : {}),
    ...(parsed.value.network ? { network: parsed.value.network } : {}),
  };
  // A session's sandbox lives in one cluster: its turns go there (none connected is 503, never
  // another cluster, which would silently lose the workspace). A bound id of a region no longer
  // served goes anywhere; the agent then finds it gone and starts a fresh one.
  const home = bound ? sandboxWhere(config.regions, bound) : null;
  const sse = wantsEventStream(c);
  const out = await relayFrom(c, {
    method: "POST",
    path: "/v1/chat",
    body: encodeJson(relayBody),
    // The agent streams even when the client wants JSON: the edge then sees each tool call pass, so
    // a turn whose client leaves (or cancels) mid-turn is still charged per model call.
    accept: "text/event-stream",
    ...(home ? { regions: [home.region], cluster: home.cluster } : {}),
    timeoutMs: config.relayTimeoutMs * CHAT_TIMEOUT_FACTOR,
  });
  const save = (r: ChatResponse) =>
    sessions.append(
      tenant,
      sessionId,
      requestId,
      [
        { role: "user", content: parsed.value.message },
        { role: "assistant", content: r.reply },
      ] satisfies ChatHistoryMessage[],
      sessionMode ? (r.sandboxId ?? null) : undefined,
    );
  // The request's own token paid for the first model call; each further one costs one more —
  // whether the turn finished (`modelCalls` of its response) or failed after some calls.
  const charge = (modelCalls: number | undefined) => {
    const more = (modelCalls ?? 1) - 1;
    return more > 0 ? c.get("deps").quota.charge(tenant, more) : Promise.resolve();
  };
  /** A streamed turn's end: its reply saved and its model calls charged. */
  const settle = (end: TurnEnd | null): Promise<unknown> | undefined => {
    if (end === null) return undefined;
    if (end.failed) return charge(end.modelCalls);
    return Promise.all([save(end.response), charge(end.response.modelCalls)]);
  };

  if (!out.response.ok || !out.response.body) {
    const made = Number(out.response.headers.get(MODEL_CALLS_HEADER));
    if (Number.isInteger(made) && made > 0) await charge(made);
    return finishRelay(c, out);
  }
  if (sse) {
    // Scan the stream as it passes to the client for the final `done` (or `error`) event. Not a
    // tee: a tee keeps reading the agent's stream after the client left, so the cancel never
    // reached the agent and the chat (and its lease) ran on; through a pipe, the client's cancel propagates.
    // Links the model opened get their URL for this caller (chat-links.ts) before the scan.
    const { stream, done } = scanForDone(signStreamLinks(out.response.body, chatLinkSigner(c)));
    waitUntil(c, done.then(settle));
    return finishRelay(c, { ...out, response: new Response(stream, out.response) });
  }
  if (isEventStream(out.response)) {
    // A JSON client: the stream is read here to its end and the answer is its `done`. Saved and
    // charged before the answer (the next turn sees this one), and in waitUntil too: a client
    // that left mid-turn is still charged per tool call seen.
    const { stream, done } = scanForDone(out.response.body);
    void stream.pipeTo(new WritableStream()).catch(() => {});
    const settled = done.then(settle);
    waitUntil(c, settled);
    const end = await done;
    await settled;
    return finishRelay(c, { ...out, response: await jsonAnswer(c, out.response, end) });
  }
  // An agent that answered JSON all the same (one from before it streamed for every client).
  const body: unknown = await out.response
    .clone()
    .json()
    .catch(() => null);
  const result = ChatResponseSchema.safeParse(body);
  if (result.success) await Promise.all([save(result.data), charge(result.data.modelCalls)]);
  const signed = await signResponseLinks(body, chatLinkSigner(c));
  if (!signed) return finishRelay(c, out);
  const headers = new Headers(out.response.headers);
  headers.delete("Content-Length");
  return finishRelay(c, {
    ...out,
    response: new Response(JSON.stringify(signed), { status: out.response.status, headers }),
  });
}

const isEventStream = (res: Response) =>
  (res.headers.get("Content-Type") ?? "").toLowerCase().startsWith("text/event-stream");

/** A streamed turn's end as the JSON answer a non-streaming client asked for. */
async function jsonAnswer(c: AppContext, streamed: Response, end: TurnEnd | null): Promise<Response> {
  const requestId = c.get("requestId");
  const headers = new Headers(streamed.headers);
  headers.delete("Content-Length");
  headers.set("Content-Type", "application/json; charset=utf-8");
  if (end === null) {
    return errorResponse(
      new AppError("agent_unavailable", "the chat ended without an answer"),
      requestId,
      headers,
    );
  }
  if (end.failed) {
    const e = end.error;
    if (end.modelCalls !== undefined) headers.set(MODEL_CALLS_HEADER, String(end.modelCalls));
    const error = e
      ? new AppError(e.code, e.message, {
          ...(e.retryAfterSeconds !== undefined ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
          ...(e.details !== undefined ? { details: e.details } : {}),
        })
      : new AppError("agent_unavailable", "the chat failed");
    return errorResponse(error, requestId, headers);
  }
  const signed = await signResponseLinks(end.raw, chatLinkSigner(c));
  return new Response(JSON.stringify(signed ?? end.raw), { status: 200, headers });
}

function waitUntil(c: AppContext, p: Promise<unknown>): void {
  const guarded = p.catch(() => undefined);
  try {
    c.executionCtx.waitUntil(guarded);
  } catch {
    // no execution context (app.fetch without one): the promise still runs
  }
}

/** How a streamed turn ended: its `done` response, or its `error` event's model-call count. */
type TurnEnd =
  /** `raw`: the `done` event's response as the agent sent it (what a JSON client gets). */
  | { failed: false; response: ChatResponse; raw: unknown }
  | { failed: true; modelCalls: number | undefined; error?: ErrorBody };

/**
 * Pass an SSE stream through unchanged while looking for its terminal `done` or `error` event:
 * `done` settles with it once the stream has ended. A stream that ends without one (the client
 * cancelled, the tunnel broke) is charged one model call per `tool.call` seen: every tool call
 * was asked for by a model call (parallel calls of one round are counted each, the call after the
 * last round not at all), so a client cannot make long turns free by leaving before their end.
 */
function scanForDone(source: ReadableStream<Uint8Array>): {
  stream: ReadableStream<Uint8Array>;
  done: Promise<TurnEnd | null>;
} {
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let found: TurnEnd | null = null;
  let toolCalls = 0;
  const look = (messages: SseMessage[]) => {
    for (const m of messages) {
      if (m.event === "tool.call") toolCalls++;
      if (m.event !== "done" && m.event !== "error") continue;
      try {
        const data = JSON.parse(m.data) as { response?: unknown; modelCalls?: unknown; error?: unknown };
        if (m.event === "error") {
          const n = data.modelCalls;
          const error = ErrorBodySchema.safeParse(data.error);
          found = {
            failed: true,
            modelCalls: Number.isInteger(n) ? (n as number) : undefined,
            ...(error.success ? { error: error.data } : {}),
          };
          continue;
        }
        const res = ChatResponseSchema.safeParse(data.response);
        if (res.success) found = { failed: false, response: res.data, raw: data.response };
      } catch {
        // not JSON: not ours
      }
    }
  };
  const scan = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      controller.enqueue(chunk);
      look(parser.push(decoder.decode(chunk, { stream: true })));
    },
    flush() {
      look(parser.push(decoder.decode()));
      look(parser.end());
    },
  });
  const ended = (): TurnEnd | null =>
    found ?? (toolCalls > 0 ? { failed: true, modelCalls: toolCalls } : null);
  const done = source.pipeTo(scan.writable).then(ended, ended);
  return { stream: scan.readable, done };
}

const doc: RouteDef["doc"] = {
  summary:
    'One chat turn with the sandbox agent (`sandbox: "session"` keeps a sandbox across the session\'s turns); `Accept: text/event-stream` streams ChatEvents',
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
