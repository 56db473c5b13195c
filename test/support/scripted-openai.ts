/**
 * A scripted OpenAI-compatible HTTP server. It is NOT a language model: it replays a fixed script of
 * assistant turns (text, tool calls, injected failures) in the order requests arrive, and records
 * every request so tests can assert what the model was sent. Every response names the model
 * "scripted-not-an-llm" and carries the header `x-scripted-not-an-llm: true`.
 *
 * Speaks `POST /v1/chat/completions` (streaming SSE with tool_call deltas, and non-streaming) and
 * `GET /v1/models`. Listens on 127.0.0.1, port 0 by default.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { pathToFileURL } from "node:url";

export const SCRIPTED_MODEL = "scripted-not-an-llm";

export interface ScriptedToolCall {
  /** Default: `call_scripted_<request>_<i>`. */
  id?: string;
  /** Default: run_in_sandbox. */
  name?: string;
  /** An object is JSON-encoded; a string is sent verbatim (use it for malformed JSON). */
  arguments: string | Record<string, unknown>;
}

/** What the server does for one chat completion request. */
export type ScriptTurn =
  | { type: "text"; text: string | ((req: RecordedRequest) => string) }
  | { type: "tool_calls"; calls: ScriptedToolCall[]; text?: string }
  /** An HTTP error, e.g. 429 with retryAfter "1", 500, 503. */
  | { type: "error"; status: number; retryAfter?: string; message?: string }
  /** Send the headers (and `text` as chunks when streaming), then never finish: for abort and idle-timeout tests. */
  | { type: "stall"; text?: string }
  /** Destroy the connection without answering: a connection error for the client. */
  | { type: "drop" };

export interface RecordedRequest {
  index: number;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (undefined for GET or unparsable bodies). */
  body: ChatCompletionBody | undefined;
  stream: boolean;
  at: number;
}

/** The fields of a chat completion request the tests look at; the rest is kept as sent. */
export interface ChatCompletionBody {
  model?: string;
  stream?: boolean;
  messages: Array<{
    role: string;
    content?: string | null;
    tool_call_id?: string;
    tool_calls?: Array<{ id: string; type: string; function: { name: string; arguments: string } }>;
  }>;
  tools?: Array<{ type: string; function: { name: string; parameters?: unknown } }>;
  [k: string]: unknown;
}

export interface ScriptedOpenAIOptions {
  /** Turns replayed in order, one per chat completion request. */
  script?: ScriptTurn[];
  /** Instead of (or after) the script: decides each turn from the request. */
  respond?: (req: RecordedRequest) => ScriptTurn;
  /** When set, requests without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** Streamed text is cut into pieces of this many characters (default 5). */
  chunkChars?: number;
  /** Pause between streamed chunks (default 0). */
  chunkDelayMs?: number;
  /** Default 0 (any free port); the offline demo may pin one. */
  port?: number;
}

export interface ScriptedOpenAI {
  /** Base URL for OPENAI_BASE_URL, ending in /v1. */
  baseURL: string;
  model: typeof SCRIPTED_MODEL;
  /** Every request received, in order (including GETs and failed ones). */
  requests: RecordedRequest[];
  /** Only the chat completion requests. */
  completions(): RecordedRequest[];
  /** Appends turns to the script. */
  push(...turns: ScriptTurn[]): void;
  /** Turns not yet consumed. */
  remaining(): number;
  /** Number of responses currently held open by "stall" turns. */
  openStalls(): number;
  close(): Promise<void>;
}

export async function startScriptedOpenAI(opts: ScriptedOpenAIOptions = {}): Promise<ScriptedOpenAI> {
  const script = [...(opts.script ?? [])];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const stalls = new Set<ServerResponse>();
  const chunkChars = opts.chunkChars ?? 5;
  const chunkDelayMs = opts.chunkDelayMs ?? 0;
  let completionCount = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendError(res, 500, `scripted server failure: ${(e as Error).message}`);
      else res.destroy();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const raw = await readBody(req, 8 * 1024 * 1024);
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    let body: ChatCompletionBody | undefined;
    try {
      body = raw.length > 0 ? (JSON.parse(raw.toString("utf8")) as ChatCompletionBody) : undefined;
    } catch {
      body = undefined;
    }
    const record: RecordedRequest = {
      index: requests.length,
      method: req.method ?? "GET",
      path: url.pathname,
      headers: { ...req.headers },
      body,
      stream: body?.stream === true,
      at: Date.now(),
    };
    requests.push(record);
    res.setHeader("x-scripted-not-an-llm", "true");

    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      return sendError(res, 401, "scripted server: wrong or missing API key", "invalid_api_key");
    }
    if (req.method === "GET" && url.pathname === "/v1/models") {
      return sendJson(res, 200, {
        object: "list",
        data: [
          { id: SCRIPTED_MODEL, object: "model", created: 0, owned_by: "test-script (not a language model)" },
        ],
      });
    }
    if (req.method !== "POST" || url.pathname !== "/v1/chat/completions") {
      return sendError(res, 404, `scripted server: no route ${req.method} ${url.pathname}`);
    }
    if (!body || !Array.isArray(body.messages)) {
      return sendError(res, 400, "scripted server: body must be JSON with a messages array");
    }
    const n = completionCount++;
    const turn = script.shift() ?? opts.respond?.(record);
    if (!turn) {
      return sendError(
        res,
        500,
        `scripted server: the script has no turn for request #${n} (script exhausted)`,
      );
    }
    await play(turn, record, n, res);
  }

  async function play(turn: ScriptTurn, record: RecordedRequest, n: number, res: ServerResponse) {
    const id = `chatcmpl-scripted-${n}`;
    switch (turn.type) {
      case "drop":
        res.socket?.destroy();
        return;
      case "error": {
        if (turn.retryAfter !== undefined) res.setHeader("retry-after", turn.retryAfter);
        // The real API says whether to retry; leave it to the client's status logic instead.
        return sendError(res, turn.status, turn.message ?? `scripted ${turn.status} (injected failure)`);
      }
      case "stall": {
        stalls.add(res);
        res.on("close", () => stalls.delete(res));
        if (record.stream) {
          startSse(res);
          for (const piece of split(turn.text ?? "", chunkChars)) {
            writeSse(res, chunk(id, { role: "assistant", content: piece }, null));
          }
        } else {
          res.writeHead(200, { "content-type": "application/json" });
          res.flushHeaders();
        }
        return; // held open until the client goes away or close()
      }
      case "text": {
        const text = typeof turn.text === "function" ? turn.text(record) : turn.text;
        if (!record.stream)
          return sendJson(res, 200, completion(id, { role: "assistant", content: text }, "stop"));
        startSse(res);
        writeSse(res, chunk(id, { role: "assistant", content: "" }, null));
        for (const piece of split(text, chunkChars)) {
          await pause(chunkDelayMs);
          if (res.destroyed) return;
          writeSse(res, chunk(id, { content: piece }, null));
        }
        writeSse(res, chunk(id, {}, "stop"));
        return endSse(res);
      }
      case "tool_calls": {
        const calls = turn.calls.map((c, i) => ({
          id: c.id ?? `call_scripted_${n}_${i}`,
          type: "function" as const,
          function: {
            name: c.name ?? "run_in_sandbox",
            arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
          },
        }));
        if (!record.stream) {
          return sendJson(
            res,
            200,
            completion(
              id,
              { role: "assistant", content: turn.text ?? null, tool_calls: calls },
              "tool_calls",
            ),
          );
        }
        startSse(res);
        writeSse(res, chunk(id, { role: "assistant", content: turn.text ?? null }, null));
        // Like the real API: the first fragment of each call carries id and name, the rest carry argument pieces.
        for (const [i, c] of calls.entries()) {
          await pause(chunkDelayMs);
          if (res.destroyed) return;
          writeSse(
            res,
            chunk(
              id,
              {
                tool_calls: [
                  {
                    index: i,
                    id: c.id,
                    type: "function",
                    function: { name: c.function.name, arguments: "" },
                  },
                ],
              },
              null,
            ),
          );
          for (const piece of split(
            c.function.arguments,
            Math.max(1, Math.ceil(c.function.arguments.length / 3)),
          )) {
            writeSse(res, chunk(id, { tool_calls: [{ index: i, function: { arguments: piece } }] }, null));
          }
        }
        writeSse(res, chunk(id, {}, "tool_calls"));
        return endSse(res);
      }
    }
  }

  const chunk = (id: string, delta: Record<string, unknown>, finish: string | null) => ({
    id,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: SCRIPTED_MODEL,
    system_fingerprint: SCRIPTED_MODEL,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
  });
  const completion = (id: string, message: Record<string, unknown>, finish: string) => ({
    id,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: SCRIPTED_MODEL,
    system_fingerprint: SCRIPTED_MODEL,
    choices: [{ index: 0, message: { refusal: null, ...message }, finish_reason: finish, logprobs: null }],
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    model: SCRIPTED_MODEL,
    requests,
    completions: () => requests.filter((r) => r.path === "/v1/chat/completions" && r.method === "POST"),
    push: (...turns) => {
      script.push(...turns);
    },
    remaining: () => script.length,
    openStalls: () => stalls.size,
    close: async () => {
      for (const res of stalls) res.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The content of the last tool message the client sent: lets a scripted reply quote real command output. */
export function lastToolOutput(req: RecordedRequest): string {
  const tools = (req.body?.messages ?? []).filter((m) => m.role === "tool");
  return tools.at(-1)?.content ?? "";
}

/** The last user message the client sent. */
export function lastUserMessage(req: RecordedRequest): string {
  const users = (req.body?.messages ?? []).filter((m) => m.role === "user");
  return users.at(-1)?.content ?? "";
}

/**
 * A stateless responder for the offline demo, clearly not a language model: for a new user message
 * it runs the command quoted in backticks in that message (default `pwd && ls -la`), and once the
 * tool has answered it replies with the command's output verbatim, labelled as a scripted reply.
 */
export function demoResponder(req: RecordedRequest): ScriptTurn {
  const last = req.body?.messages.at(-1);
  if (last?.role === "tool") {
    return {
      type: "text",
      text: `(Scripted reply from ${SCRIPTED_MODEL} — this is not a language model.) The sandbox answered:\n\n${lastToolOutput(req)}`,
    };
  }
  const quoted = /`([^`]+)`/.exec(lastUserMessage(req))?.[1];
  return { type: "tool_calls", calls: [{ arguments: { command: quoted ?? "pwd && ls -la" } }] };
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

function sendError(res: ServerResponse, status: number, message: string, code: string | null = null) {
  sendJson(res, status, {
    error: { message, type: status === 429 ? "rate_limit_error" : "server_error", param: null, code },
  });
}

function startSse(res: ServerResponse) {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  res.flushHeaders();
}

function writeSse(res: ServerResponse, data: unknown) {
  if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
}

function endSse(res: ServerResponse) {
  if (res.destroyed) return;
  res.write("data: [DONE]\n\n");
  res.end();
}

function split(s: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

const pause = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (b: Buffer) => {
      size += b.length;
      if (size > limit) {
        reject(new Error("request body too large"));
        req.destroy();
        return;
      }
      parts.push(b);
    });
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}

// `npx tsx test/support/scripted-openai.ts [port]`: the offline demo's stand-in model (demoResponder).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.argv[2] ?? 0);
  const s = await startScriptedOpenAI({ respond: demoResponder, port, chunkDelayMs: 15 });
  process.stdout.write(
    `scripted OpenAI-compatible server (NOT a language model) at ${s.baseURL}\n` +
      `  OPENAI_BASE_URL=${s.baseURL} OPENAI_MODEL=${SCRIPTED_MODEL}\n`,
  );
  const stop = () => void s.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
