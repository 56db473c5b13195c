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
  SecretInfo,
  SecretPutRequest,
} from "./types.ts";

export interface ChatOptions extends CallOptions {
  sessionId?: string;
  /** Bind the chat to a sandbox (servers without chat-sandbox binding refuse it: 400). */
  sandbox?: string;
  stream?: boolean;
  /** Where the chat's commands may connect (request mode: this request's pod; session: its sandbox). */
  network?: { allow?: string[]; deny?: string[] };
}

export class SandboxClient {
  /** @internal */
  readonly transport: Transport;
  readonly sandboxes: Sandboxes;
  readonly secrets: Secrets;

  constructor(opts: ClientOptions) {
    this.transport = new Transport(opts);
    this.sandboxes = new Sandboxes(this.transport);
    this.secrets = new Secrets(this.transport);
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
    if (opts.network !== undefined) json.network = opts.network;
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

/**
 * The tenant's secrets (needs the `sandbox:secrets` scope). A value is write-only: `list` shows
 * names and where each may be sent. A sandbox created with `secrets: [name]` sees a placeholder in
 * `$name`; the egress proxy puts the value in its place only in requests to the secret's hosts.
 */
export class Secrets {
  constructor(private readonly transport: Transport) {}

  /** Create or replace `name`. */
  put(name: string, secret: SecretPutRequest, opts: CallOptions = {}): Promise<SecretInfo> {
    return this.transport.json<SecretInfo>({
      method: "PUT",
      path: `/v1/secrets/${encodeURIComponent(name)}`,
      json: secret,
      ...callOptions(opts),
    });
  }

  async list(opts: CallOptions = {}): Promise<SecretInfo[]> {
    const body = await this.transport.json<{ secrets?: SecretInfo[] }>({
      method: "GET",
      path: "/v1/secrets",
      ...callOptions(opts),
    });
    if (!Array.isArray(body.secrets))
      throw new SandboxApiError({
        code: "invalid_response",
        message: "no secrets[] in the answer",
        status: 200,
      });
    return body.secrets;
  }

  async remove(name: string, opts: CallOptions = {}): Promise<void> {
    await this.transport.json<void>({
      method: "DELETE",
      path: `/v1/secrets/${encodeURIComponent(name)}`,
      ...callOptions(opts),
    });
  }
}
