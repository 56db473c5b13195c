import { SandboxApiError } from "./errors.ts";
import { type ExecOptions, execEvents, execJson } from "./exec-spec.ts";
import { Sandbox } from "./sandbox.ts";
import { typedEvents } from "./streams.ts";
import { type CallOptions, type ClientOptions, callOptions, Transport } from "./transport.ts";
import type {
  ChatEvent,
  ChatResponse,
  ChatStreamEvent,
  CreateSandboxBody,
  ExecEvent,
  ExecResult,
  PoolOverview,
  SandboxInfo,
} from "./types.ts";

export interface ChatOptions extends CallOptions {
  sessionId?: string;
  /** Bind the chat to a sandbox (servers without chat-sandbox binding refuse it: 400). */
  sandbox?: string;
  stream?: boolean;
}

export class SandboxClient {
  /** @internal */
  readonly transport: Transport;
  readonly sandboxes: Sandboxes;

  constructor(opts: ClientOptions) {
    this.transport = new Transport(opts);
    this.sandboxes = new Sandboxes(this.transport);
  }

  /** One command in a disposable pod (`POST /v1/exec`). A command's own timeout is a result (`timedOut`), not an error. */
  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return execJson(this.transport, "/v1/exec", command, opts);
  }

  execStream(command: string, opts: ExecOptions = {}): AsyncGenerator<ExecEvent> {
    return execEvents(this.transport, "/v1/exec", command, opts);
  }

  /** A chat turn: the reply with its tool calls, or (`stream: true`) its events ending in `done`. */
  chat(message: string, opts: ChatOptions & { stream: true }): AsyncGenerator<ChatStreamEvent>;
  chat(message: string, opts?: ChatOptions & { stream?: false }): Promise<ChatResponse>;
  chat(message: string, opts: ChatOptions = {}): Promise<ChatResponse> | AsyncGenerator<ChatStreamEvent> {
    const json: Record<string, unknown> = { message };
    if (opts.sessionId !== undefined) json.sessionId = opts.sessionId;
    if (opts.sandbox !== undefined) json.sandbox = opts.sandbox;
    // A chat runs several commands and model calls: allow more than one exec by default.
    const spec = {
      method: "POST" as const,
      path: "/v1/chat",
      json,
      ...callOptions(opts),
      timeoutMs: opts.timeoutMs ?? Math.max(this.transport.defaultTimeoutMs, 300_000),
    };
    if (opts.stream) return typedEvents<ChatEvent>(this.transport, spec, "done");
    return this.transport.json<ChatResponse>(spec);
  }

  /** Every region's pool (needs `sandbox:admin`); `region` for one. */
  pool(opts: CallOptions & { region?: string } = {}): Promise<PoolOverview> {
    return this.transport.json<PoolOverview>({
      method: "GET",
      path: "/v1/pool",
      query: { region: opts.region },
      ...callOptions(opts),
    });
  }
}

export class Sandboxes {
  constructor(private readonly transport: Transport) {}

  /** A sandbox that lives across requests until deleted, idle or too old. With `name`: get-or-create. */
  async create(opts: CreateSandboxBody & CallOptions = {}): Promise<Sandbox> {
    const { signal: _s, timeoutMs: _t, retries: _r, ...json } = opts;
    const info = await this.transport.json<SandboxInfo>({
      method: "POST",
      path: "/v1/sandboxes",
      json,
      ...callOptions(opts),
    });
    return new Sandbox(this.transport, info);
  }

  async get(id: string, opts: CallOptions = {}): Promise<Sandbox> {
    const info = await this.transport.json<SandboxInfo>({
      method: "GET",
      path: `/v1/sandboxes/${encodeURIComponent(id)}`,
      ...callOptions(opts),
    });
    return new Sandbox(this.transport, info);
  }

  /** The caller's own sandboxes; `name` filters. */
  async list(opts: CallOptions & { name?: string } = {}): Promise<Sandbox[]> {
    const body = await this.transport.json<{ sandboxes?: SandboxInfo[] }>({
      method: "GET",
      path: "/v1/sandboxes",
      query: { name: opts.name },
      ...callOptions(opts),
    });
    if (!Array.isArray(body.sandboxes)) {
      throw new SandboxApiError({
        code: "invalid_response",
        message: "no sandboxes[] in the answer",
        status: 200,
      });
    }
    return body.sandboxes.map((s) => new Sandbox(this.transport, s));
  }

  /** Delete by id without fetching it first. */
  async remove(id: string, opts: CallOptions = {}): Promise<void> {
    await this.transport.json<void>({
      method: "DELETE",
      path: `/v1/sandboxes/${encodeURIComponent(id)}`,
      ...callOptions(opts),
    });
  }
}
