import { z } from "zod";
import {
  NetworkPolicySchema,
  POLICY_LIMITS,
  SecretNameSchema,
  secretBindingFields,
} from "./egress-policy.ts";
import { ErrorBodySchema } from "./errors.ts";
import { PROCESS_SIGNALS } from "./process-signals.ts";

export { PROCESS_SIGNALS };

/** Limits that both sides enforce, so a request the edge accepts is one the agent accepts. */
export const LIMITS = {
  commandBytes: 64 * 1024,
  stdinBytes: 1024 * 1024,
  messageBytes: 32 * 1024,
  maxTimeoutSeconds: 900,
  defaultTimeoutSeconds: 30,
  /** Per-stream output cap in the result (the true byte count is always reported). */
  outputCapBytes: 1024 * 1024,
  /** Largest request body the edge accepts. */
  requestBodyBytes: 2 * 1024 * 1024,
} as const;

/** The scopes a tenant token may carry; each route needs one. */
export const SCOPES = {
  exec: "sandbox:exec",
  chat: "sandbox:chat",
  admin: "sandbox:admin",
  /** Write, list and delete the tenant's secrets (/v1/secrets): not implied by running commands. */
  secrets: "sandbox:secrets",
} as const;
export type Scope = (typeof SCOPES)[keyof typeof SCOPES];

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

export const EnvSchema = z
  .record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "env names are [A-Za-z_][A-Za-z0-9_]*"),
    z.string().max(32 * 1024),
  )
  .refine((e) => Object.keys(e).length <= 64, "at most 64 env variables");

/** A path inside the sandbox workspace; anything that could escape it is refused. */
export const WorkspacePathSchema = z
  .string()
  .max(1024)
  .refine((p) => p === "/workspace" || p.startsWith("/workspace/"), "cwd must be /workspace or below it")
  .refine((p) => !p.split("/").includes(".."), "cwd must not contain '..'");

// ---------- exec ----------

/** A shell command line (run by `/bin/sh -c`): commands and processes alike. */
const CommandSchema = z
  .string()
  .min(1, "command must not be empty")
  .refine((c) => utf8Bytes(c) <= LIMITS.commandBytes, `command is longer than ${LIMITS.commandBytes} bytes`);

export const ExecRequestSchema = z.strictObject({
  command: CommandSchema,
  timeoutSeconds: z.number().int().min(1).max(LIMITS.maxTimeoutSeconds).default(LIMITS.defaultTimeoutSeconds),
  stdin: z
    .string()
    .refine((s) => utf8Bytes(s) <= LIMITS.stdinBytes, `stdin is longer than ${LIMITS.stdinBytes} bytes`)
    .optional(),
  cwd: WorkspacePathSchema.optional(),
  env: EnvSchema.optional(),
  /** `base64`: stdout/stderr (result and stream events) are base64 of the exact bytes. */
  outputEncoding: z.enum(["utf8", "base64"]).optional(),
  /**
   * `POST /v1/exec` only: where this call's pod may connect through the egress proxy, for this
   * call alone (gone when the pod is released). Absent: nowhere. A sandbox's policy is its own
   * (`PUT /v1/sandboxes/:id/network`): on `/v1/sandboxes/:id/exec` this is refused.
   */
  network: NetworkPolicySchema.optional(),
});
export type ExecRequest = z.infer<typeof ExecRequestSchema>;
/** Why `network` on `/v1/sandboxes/:id/exec` is a 400: a sandbox's policy is changed by PUT only. */
export const SANDBOX_EXEC_NETWORK_REFUSAL =
  "network: a sandbox's policy is set with PUT /v1/sandboxes/:id/network, not per command";
export type ExecRequestInput = z.input<typeof ExecRequestSchema>;

/** What a command did, independent of where it ran (exec server, pods/exec). */
export const ExecOutcomeSchema = z.object({
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  truncated: z.boolean(),
  stdout: z.string(),
  stderr: z.string(),
  stdoutBytes: z.number().int().nonnegative(),
  stderrBytes: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
});
export type ExecOutcome = z.infer<typeof ExecOutcomeSchema>;

export const ExecResultSchema = ExecOutcomeSchema.extend({
  requestId: z.string(),
  /** Set by the agent that served the request: its region. */
  region: z.string().optional(),
  pod: z.string(),
  queueMs: z.number().nonnegative(),
});
export type ExecResult = z.infer<typeof ExecResultSchema>;

/** Server-sent events of a streamed exec (`Accept: text/event-stream`); the SSE `event:` is `type`. */
export const ExecStreamEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("queued"), position: z.number().int().nonnegative() }),
  z.object({ type: z.literal("acquired"), pod: z.string(), queueMs: z.number().nonnegative() }),
  z.object({ type: z.literal("stdout"), data: z.string() }),
  z.object({ type: z.literal("stderr"), data: z.string() }),
  z.object({ type: z.literal("result"), result: ExecResultSchema }),
  z.object({ type: z.literal("error"), error: ErrorBodySchema }),
]);
export type ExecStreamEvent = z.infer<typeof ExecStreamEventSchema>;

// ---------- sandboxes that live across requests ----------

export const SANDBOX_LIMITS = {
  defaultIdleTimeoutSeconds: 300,
  minIdleTimeoutSeconds: 10,
  maxIdleTimeoutSeconds: 3600,
  defaultMaxLifetimeSeconds: 3600,
  minMaxLifetimeSeconds: 60,
  maxMaxLifetimeSeconds: 86_400,
  /** Default of MAX_FILE_BYTES (edge and agent). */
  defaultMaxFileBytes: 64 * 1024 * 1024,
  /**
   * One page of a directory listing holds at most this many entries and this many bytes of JSON
   * entries (shared/list-page.ts); the rest is `truncated`, with `next` to pass as `after`.
   */
  maxListEntries: 10_000,
  maxListBytes: 1024 * 1024,
} as const;

/**
 * A file read's size, set by the agent: the tunnel and the Durable Object re-frame the body and
 * lose its Content-Length, so the edge restores it from this header (and drops the header).
 */
export const SANDBOX_FILE_SIZE_HEADER = "x-sandbox-file-size";

const ID_PART = "[a-z0-9-]{1,32}";
/**
 * `sb.<region>.<cluster>.<20 random [a-z0-9]>`: the edge routes by the region and cluster it names
 * without any edge-side record; the random part makes it unguessable. Clients treat it as opaque.
 */
export const SANDBOX_ID_PATTERN = new RegExp(`^sb\\.(${ID_PART})\\.(${ID_PART})\\.([a-z0-9]{20})$`);
export const SandboxIdSchema = z.string().regex(SANDBOX_ID_PATTERN, "not a sandbox id");
export const ClusterIdSchema = z
  .string()
  .regex(new RegExp(`^${ID_PART}$`), "cluster ids are 1-32 of [a-z0-9-]");

export function parseSandboxId(id: string): { region: string; cluster: string } | null {
  const m = SANDBOX_ID_PATTERN.exec(id);
  return m ? { region: m[1]!, cluster: m[2]! } : null;
}

/**
 * A caller's own request id (sent as `X-Request-Id`): echoed as `X-Client-Request-Id`, forwarded to
 * agents, and the handle `POST /v1/requests/{id}/cancel` stops the request by.
 */
export const ClientRequestIdSchema = z
  .string()
  .regex(/^[\x21-\x7e]{1,128}$/, "a request id is 1-128 printable ASCII characters, no spaces");

export const CancelResultSchema = z.object({
  requestId: z.string(),
  /** How many in-flight requests with this id (of this tenant) were stopped. */
  cancelled: z.number().int().positive(),
});
export type CancelResult = z.infer<typeof CancelResultSchema>;

export const SandboxNameSchema = z.string().regex(/^[a-z0-9-]{1,63}$/, "name is 1-63 of [a-z0-9-]");

export const SandboxCreateRequestSchema = z.strictObject({
  name: SandboxNameSchema.optional(),
  idleTimeoutSeconds: z
    .number()
    .int()
    .min(SANDBOX_LIMITS.minIdleTimeoutSeconds)
    .max(SANDBOX_LIMITS.maxIdleTimeoutSeconds)
    .default(SANDBOX_LIMITS.defaultIdleTimeoutSeconds),
  maxLifetimeSeconds: z
    .number()
    .int()
    .min(SANDBOX_LIMITS.minMaxLifetimeSeconds)
    .max(SANDBOX_LIMITS.maxMaxLifetimeSeconds)
    .default(SANDBOX_LIMITS.defaultMaxLifetimeSeconds),
  /** Default environment of every command run in the sandbox (a command's own env wins). */
  env: EnvSchema.optional(),
  /**
   * Where the sandbox may connect through the egress proxy (shared/egress-policy.ts); absent =
   * nowhere. `PUT /v1/sandboxes/:id/network` replaces it.
   */
  network: NetworkPolicySchema.optional(),
  /**
   * The tenant's secrets (`PUT /v1/secrets/:name`) this sandbox may use: each appears in its env
   * under its name as a placeholder, which the egress proxy replaces with the value only in
   * requests to the hosts the secret is bound to. Unknown names are `404 secret_not_found`.
   */
  secrets: z
    .array(SecretNameSchema)
    .max(POLICY_LIMITS.secrets)
    .refine((s) => new Set(s).size === s.length, "each secret may be named once")
    .optional(),
});
export type SandboxCreateRequest = z.infer<typeof SandboxCreateRequestSchema>;
export type SandboxCreateRequestInput = z.input<typeof SandboxCreateRequestSchema>;

export const SandboxSchema = z.object({
  id: SandboxIdSchema,
  name: SandboxNameSchema.optional(),
  region: z.string(),
  pod: z.string(),
  state: z.literal("ready"),
  createdAt: z.string(),
  lastActivityAt: z.string(),
  /** When it will be deleted if nothing uses it: min(last activity + idle timeout, creation + max lifetime). */
  expiresAt: z.string(),
  idleTimeoutSeconds: z.number().int().positive(),
  maxLifetimeSeconds: z.number().int().positive(),
});
export type Sandbox = z.infer<typeof SandboxSchema>;

/**
 * `GET`/`PUT /v1/sandboxes/:id/network`: the sandbox's network policy, both lists always present in
 * answers (empty allow = no network). A PUT replaces the whole policy.
 */
export const SandboxNetworkSchema = z.object({
  allow: z.array(z.string()),
  deny: z.array(z.string()),
});
export type SandboxNetwork = z.infer<typeof SandboxNetworkSchema>;

/** Largest secret value (bytes of UTF-8): it travels in one request header. */
export const MAX_SECRET_VALUE_BYTES = 8 * 1024;

/**
 * `PUT /v1/secrets/:name`: a tenant secret (write-only value) and where the egress proxy may send
 * it: only in `header` (default Authorization, as `format`, default `Bearer {value}`) of requests
 * to `hosts` (names or `*.name`, optional `:port`), and only when that header carries the
 * sandbox's placeholder.
 */
export const SecretPutRequestSchema = z.strictObject({
  value: z
    .string()
    .min(1)
    .refine((v) => utf8Bytes(v) <= MAX_SECRET_VALUE_BYTES, `at most ${MAX_SECRET_VALUE_BYTES} bytes`)
    .refine((v) => !/[\r\n\0]/.test(v), "must not contain CR, LF or NUL (it goes into a header)"),
  ...secretBindingFields(),
});
export type SecretPutRequest = z.infer<typeof SecretPutRequestSchema>;

/** A secret as the API shows it: never its value. */
export const SecretInfoSchema = z.object({
  name: z.string(),
  hosts: z.array(z.string()),
  header: z.string(),
  format: z.string(),
  updatedAt: z.string(),
});
export type SecretInfo = z.infer<typeof SecretInfoSchema>;
export const SecretListSchema = z.object({ secrets: z.array(SecretInfoSchema) });

export const SandboxListSchema = z.object({ sandboxes: z.array(SandboxSchema) });
export type SandboxList = z.infer<typeof SandboxListSchema>;

export const FileEntrySchema = z.object({
  name: z.string(),
  type: z.enum(["file", "dir", "symlink"]),
  size: z.number().int().nonnegative(),
  mtime: z.string(),
});
/**
 * One entry of a directory listing: the one declaration. The exec server (a separate program that
 * imports nothing outside its folder) mirrors it in sandbox-server/files.ts; test/unit/file-entry.test.ts
 * holds the two equal.
 */
export type FileEntry = z.infer<typeof FileEntrySchema>;
export const DirListingSchema = z.object({
  entries: z.array(FileEntrySchema),
  /** More entries follow than this page holds (SANDBOX_LIMITS.maxListEntries / maxListBytes, or `limit`). */
  truncated: z.boolean().optional(),
  /** When truncated: the `after` query parameter that returns the next page. */
  next: z.string().optional(),
});
export const FileWriteResultSchema = z.object({ path: z.string(), size: z.number().int().nonnegative() });
export type FileWriteResult = z.infer<typeof FileWriteResultSchema>;

// ---------- long-lived processes in a sandbox (http exec mode) ----------

export const PROCESS_LIMITS = {
  /** `timeoutSeconds` at most a week; 0 (the default) = until deleted or the sandbox ends. */
  maxTimeoutSeconds: 7 * 24 * 3600,
  maxArgv: 4096,
  maxTerminalSide: 1000,
  /** A JSON output read returns at most this many bytes (`maxBytes`). */
  maxReadBytes: 1024 * 1024,
  /** A JSON output read with no new bytes waits at most this long for some (`waitMs`). */
  maxWaitMs: 30_000,
  /** One stdin write. */
  stdinBytes: 1024 * 1024,
} as const;

const terminalSide = z.number().int().min(1).max(PROCESS_LIMITS.maxTerminalSide);

export const ProcessStartRequestSchema = z
  .strictObject({
    /** Run by `/bin/sh -c`. Exactly one of `command` and `argv`. */
    command: CommandSchema.optional(),
    /** Run directly (argv[0] looked up on PATH). */
    argv: z
      .array(z.string())
      .min(1)
      .max(PROCESS_LIMITS.maxArgv)
      .refine((a) => (a[0] ?? "").length > 0, "argv[0] must be a program name or path")
      .refine(
        (a) => a.reduce((n, s) => n + utf8Bytes(s), 0) <= LIMITS.commandBytes,
        `argv is longer than ${LIMITS.commandBytes} bytes in all`,
      )
      .optional(),
    cwd: WorkspacePathSchema.optional(),
    env: EnvSchema.optional(),
    timeoutSeconds: z.number().int().min(0).max(PROCESS_LIMITS.maxTimeoutSeconds).optional(),
    /** Run on a pseudo-terminal: output then carries echo and CRLF; `cols`×`rows` default 80×24. */
    tty: z.boolean().optional(),
    cols: terminalSide.optional(),
    rows: terminalSide.optional(),
  })
  .refine((b) => (b.command === undefined) !== (b.argv === undefined), {
    message: "exactly one of command or argv is required",
    path: ["command"],
  })
  .refine((b) => b.tty === true || (b.cols === undefined && b.rows === undefined), {
    message: "cols and rows need tty: true",
    path: ["cols"],
  });
export type ProcessStartRequest = z.infer<typeof ProcessStartRequestSchema>;
export type ProcessStartRequestInput = z.input<typeof ProcessStartRequestSchema>;

/** One process, running or recently exited (the exec server's ProcessInfo). */
export const ProcessInfoSchema = z.object({
  pid: z.number().int().positive(),
  command: z.string().nullable(),
  argv: z.array(z.string()).nullable(),
  tty: z.boolean(),
  cwd: z.string(),
  startedAt: z.string(),
  running: z.boolean(),
  /** Null while running, and when it was killed by a signal or its timeout. */
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  endedAt: z.string().nullable(),
  /** Offset one past the newest output byte: the total bytes the process wrote. */
  outputBytes: z.number().int().nonnegative(),
  /** The oldest offset still readable (older bytes left the ring). */
  outputStart: z.number().int().nonnegative(),
  ringBytes: z.number().int().positive(),
  stdinOpen: z.boolean(),
});
export type ProcessInfo = z.infer<typeof ProcessInfoSchema>;

/** Running processes first, then recently exited ones, newest first (bounded). */
export const ProcessListSchema = z.object({ processes: z.array(ProcessInfoSchema) });

const offset = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** GET …/output query. */
export const ProcessOutputQuerySchema = z.strictObject({
  since: offset.optional(),
  maxBytes: z.coerce.number().int().min(1).max(PROCESS_LIMITS.maxReadBytes).optional(),
  waitMs: z.coerce.number().int().min(0).max(PROCESS_LIMITS.maxWaitMs).optional(),
});
/** A `Last-Event-ID` header: the offset to go on from. */
export const ProcessOffsetSchema = offset;

/**
 * GET …/output as JSON: the bytes from `since`. `dropped` > 0 when `since` had already left the
 * ring (the data starts at `offset`). Read on with `since = next`; `eof`: exited and all read.
 */
export const ProcessOutputSchema = z.object({
  offset: z.number().int().nonnegative(),
  next: z.number().int().nonnegative(),
  dropped: z.number().int().nonnegative(),
  /** base64 of the bytes. */
  data: z.string(),
  eof: z.boolean(),
});
export type ProcessOutput = z.infer<typeof ProcessOutputSchema>;

/** The SSE stream's `output` events (`id:` = the offset after them). */
export const ProcessOutputEventSchema = z.object({
  offset: z.number().int().nonnegative(),
  dropped: z.number().int().nonnegative(),
  /** base64 of the bytes. */
  data: z.string(),
});
export type ProcessOutputEvent = z.infer<typeof ProcessOutputEventSchema>;

/** The SSE stream's last event, once the process exited and every byte was sent. */
export const ProcessExitEventSchema = z.object({
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  timedOut: z.boolean(),
  outputBytes: z.number().int().nonnegative(),
});
export type ProcessExitEvent = z.infer<typeof ProcessExitEventSchema>;

export const ProcessStdinQuerySchema = z.strictObject({ eof: z.enum(["0", "1"]).optional() });
export const StdinResultSchema = z.object({
  written: z.number().int().nonnegative(),
  /** Accepted but not yet read by the process; delivered in order. */
  pending: z.number().int().nonnegative(),
  stdinOpen: z.boolean(),
});
export type StdinResult = z.infer<typeof StdinResultSchema>;

export const ProcessSignalRequestSchema = z.strictObject({ signal: z.enum(PROCESS_SIGNALS) });
export const ProcessResizeRequestSchema = z.strictObject({ cols: terminalSide, rows: terminalSide });

/**
 * The terminal (`GET …/processes/:pid/tty`, a WebSocket). Binary messages carry terminal bytes both
 * ways (client → the process's stdin; server → its output from the ring, from `?since=`); text
 * messages are JSON control messages.
 */
export const TERMINAL_SUBPROTOCOL = "pi-sandbox.terminal.v1";
/**
 * A browser cannot set Authorization on a WebSocket: it offers this prefix + its JWT as a second
 * subprotocol (`new WebSocket(url, [TERMINAL_SUBPROTOCOL, "bearer." + jwt])`); the edge answers
 * with TERMINAL_SUBPROTOCOL only, never echoing the token.
 */
export const BEARER_SUBPROTOCOL_PREFIX = "bearer.";
export const TerminalClientMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("resize"), cols: terminalSide, rows: terminalSide }),
]);
export type TerminalClientMessage = z.infer<typeof TerminalClientMessageSchema>;
export const TerminalServerMessageSchema = z.discriminatedUnion("type", [
  /** The ring dropped this many bytes before the next output (the reader was behind). */
  z.object({ type: z.literal("dropped"), bytes: z.number().int().positive() }),
  /** A client message was refused (stdin_busy, an invalid resize, …); the terminal stays open. */
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
  /** The process ended and every output byte was sent; the socket closes (1000) after it. */
  ProcessExitEventSchema.extend({ type: z.literal("exit") }),
]);
export type TerminalServerMessage = z.infer<typeof TerminalServerMessageSchema>;
export const TerminalQuerySchema = z.strictObject({ since: offset.optional() });

/** A pid as a path segment. */
export const PidSchema = z.string().regex(/^[1-9][0-9]{0,6}$/, "a pid is a positive integer");

// ---------- port links (issue 27 item 3) ----------

export const PORT_LINK_LIMITS = {
  defaultTtlSeconds: 3600,
  minTtlSeconds: 10,
  maxTtlSeconds: 86_400,
  /** Open (unexpired, unrevoked) links one sandbox may have. */
  maxOpenLinks: 16,
} as const;

/** A `:port` path segment: 1–65535 (the exec server's own port is refused by the agent). */
export const PortParamSchema = z
  .string()
  .regex(/^[1-9][0-9]{0,4}$/, "a port is 1-65535")
  .transform(Number)
  .pipe(z.number().int().min(1, "a port is 1-65535").max(65_535, "a port is 1-65535"));

/**
 * `pl-` + 20 of [a-z0-9]: the link's own DNS label (`<id>.<edge host>`), so each link is its own
 * browser origin; unguessable only together with its signed token, which is what grants access.
 */
export const LinkIdSchema = z.string().regex(/^pl-[a-z0-9]{20}$/, "not a link id");

export const PortLinkCreateRequestSchema = z.strictObject({
  ttlSeconds: z
    .number()
    .int()
    .min(PORT_LINK_LIMITS.minTtlSeconds)
    .max(PORT_LINK_LIMITS.maxTtlSeconds)
    .default(PORT_LINK_LIMITS.defaultTtlSeconds),
  /** Anyone holding the URL may use it; otherwise requests also need the tenant's JWT. */
  public: z.boolean().default(false),
});
export type PortLinkCreateRequest = z.infer<typeof PortLinkCreateRequestSchema>;
export type PortLinkCreateRequestInput = z.input<typeof PortLinkCreateRequestSchema>;

/** A link as the agent keeps it on the sandbox (no URL: the edge signs that). */
export const PortLinkRecordSchema = z.object({
  id: LinkIdSchema,
  port: z.number().int().min(1).max(65_535),
  public: z.boolean(),
  createdAt: z.string(),
  expiresAt: z.string(),
});
export type PortLinkRecord = z.infer<typeof PortLinkRecordSchema>;
export const PortLinkRecordListSchema = z.object({ links: z.array(PortLinkRecordSchema) });

/** A link as the caller gets it: the record and its URL (`https://<id>.<edge host>/?pi_link=<token>`). */
export const PortLinkSchema = PortLinkRecordSchema.extend({ url: z.string() });
export type PortLink = z.infer<typeof PortLinkSchema>;
export const PortLinkListSchema = z.object({ links: z.array(PortLinkSchema) });

/**
 * Where a link request carries its token: the URL's query parameter (the first page load), then
 * the cookie the edge sets from it for that link's host (the page's own subresources, absolute
 * paths included), or this header (programs). All three are removed before the sandbox sees it.
 */
export const PORT_LINK_TOKEN = { query: "pi_link", cookie: "pi_link", header: "x-pi-link" } as const;

/**
 * Edge → agent: the proxied request's own headers (JSON `[[name, value], …]`), kept apart from the
 * relay's headers so a client can never set one the edge or the agent reads.
 */
export const PORT_REQUEST_HEADERS_HEADER = "x-port-request-headers";
export const PortRequestHeadersSchema = z.array(z.tuple([z.string(), z.string()])).max(256);

/**
 * The only scope a relayed link request carries (the edge sets it, public link or private): the
 * agent opens nothing but the link proxy route to it, and that route needs no other scope.
 */
export const PORT_LINK_RELAY_SCOPE = "sandbox:port-link";

// ---------- chat ----------

export const SessionIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "sessionId is 1-64 of [A-Za-z0-9_-]");

export const ChatRequestSchema = z.strictObject({
  message: z
    .string()
    .min(1, "message must not be empty")
    .refine(
      (m) => utf8Bytes(m) <= LIMITS.messageBytes,
      `message is longer than ${LIMITS.messageBytes} bytes`,
    ),
  sessionId: SessionIdSchema.optional(),
  /** "request": a fresh pod per request; "session": the session's sandbox, kept across turns. */
  sandbox: z
    .enum(["request", "session"])
    .optional()
    .describe(
      '"request" (default): one pod per request; "session": the session\'s sandbox, created at the first tool call and kept across turns',
    ),
  /**
   * Where the commands' pod may connect through the egress proxy. "request": this request's pod
   * alone, gone with it. "session": the session's sandbox's policy from this turn on (as `PUT
   * /v1/sandboxes/:id/network`). Absent: nowhere, or the session sandbox's policy unchanged.
   */
  network: NetworkPolicySchema.optional(),
});
export type ChatRequest = z.infer<typeof ChatRequestSchema>;

export const ChatHistoryMessageSchema = z.object({
  role: z.enum(["user", "assistant"]),
  content: z.string(),
});
export type ChatHistoryMessage = z.infer<typeof ChatHistoryMessageSchema>;

/** What the edge relays to the agent: the public request plus the session's history. */
export const RelayChatRequestSchema = z.strictObject({
  message: ChatRequestSchema.shape.message,
  sessionId: SessionIdSchema,
  history: z.array(ChatHistoryMessageSchema).max(200),
  /** Present in session mode: the session's sandbox so far (absent before its first tool call). */
  sessionSandbox: z.strictObject({ id: SandboxIdSchema.optional() }).optional(),
  network: ChatRequestSchema.shape.network,
});
export type RelayChatRequest = z.infer<typeof RelayChatRequestSchema>;

/**
 * A port link a chat model opened (open_port_link, session mode). The agent sends it without
 * `url`: the token is signed by the edge, which adds `url` for the caller on its way to the client,
 * so the token never enters the model's context.
 */
export const ChatPortLinkSchema = z.object({
  sandboxId: SandboxIdSchema,
  linkId: LinkIdSchema,
  port: z.number().int().min(1).max(65_535),
  public: z.boolean(),
  expiresAt: z.string(),
  url: z.string().optional(),
});
export type ChatPortLink = z.infer<typeof ChatPortLinkSchema>;

export const ToolCallRecordSchema = z.object({
  id: z.string(),
  command: z.string(),
  exitCode: z.number().int().nullable(),
  durationMs: z.number().nonnegative(),
  truncated: z.boolean(),
  timedOut: z.boolean(),
  /** open_port_link: the link it opened (with `url` once the edge signed it). */
  link: ChatPortLinkSchema.optional(),
});
export type ToolCallRecord = z.infer<typeof ToolCallRecordSchema>;

export const ChatResponseSchema = z.object({
  requestId: z.string(),
  sessionId: SessionIdSchema,
  region: z.string().optional(),
  reply: z.string(),
  toolCalls: z.array(ToolCallRecordSchema),
  /** Model calls the turn made (the edge charges the tenant's quota one token per call). */
  modelCalls: z.number().int().positive().optional(),
  /** Session mode: the session's sandbox after this turn (the edge stores it with the session). */
  sandboxId: SandboxIdSchema.optional(),
});
export type ChatResponse = z.infer<typeof ChatResponseSchema>;

export const ChatEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("sandbox.waiting") }),
  z.object({ type: z.literal("sandbox.acquired"), pod: z.string(), sandboxId: SandboxIdSchema.optional() }),
  z.object({ type: z.literal("tool.call"), id: z.string(), command: z.string() }),
  z.object({
    type: z.literal("tool.result"),
    id: z.string(),
    exitCode: z.number().int().nullable(),
    durationMs: z.number().nonnegative(),
    truncated: z.boolean(),
    timedOut: z.boolean(),
    link: ChatPortLinkSchema.optional(),
  }),
  z.object({ type: z.literal("assistant.delta"), text: z.string() }),
  z.object({ type: z.literal("assistant.message"), text: z.string() }),
  z.object({ type: z.literal("sandbox.released"), pod: z.string() }),
  z.object({ type: z.literal("done"), response: ChatResponseSchema }),
  /** `modelCalls`: the model calls the failed turn made (the edge charges them, as for `done`). */
  z.object({
    type: z.literal("error"),
    error: ErrorBodySchema,
    modelCalls: z.number().int().nonnegative().optional(),
  }),
]);
/**
 * On a failed chat turn's JSON error answer (agent → edge): the model calls it made before
 * failing, which the edge charges like a finished turn's `modelCalls`. (A streamed turn puts the
 * count in its `error` event.)
 */
export const MODEL_CALLS_HEADER = "X-Model-Calls";
export type ChatEvent = z.infer<typeof ChatEventSchema>;

// ---------- pool and events ----------

export const PodStateSchema = z.enum(["starting", "ready", "leased", "recycling", "failed"]);
export type PodState = z.infer<typeof PodStateSchema>;

export const HolderSchema = z.object({ agentId: z.string(), requestId: z.string(), tenant: z.string() });
export type Holder = z.infer<typeof HolderSchema>;

export const PodSnapshotSchema = z.object({
  name: z.string(),
  state: PodStateSchema,
  podIP: z.string().nullable(),
  holder: HolderSchema.nullable(),
  /** ISO times as the agent observed them. */
  acquiredAt: z.string().nullable(),
  renewedAt: z.string().nullable(),
  leaseDurationSeconds: z.number().int().positive().nullable(),
  transitions: z.number().int().nonnegative(),
});
export type PodSnapshot = z.infer<typeof PodSnapshotSchema>;

/** A sandbox as the dashboard shows it (the pool snapshot carries every live one of the cluster). */
export const SandboxSnapshotSchema = z.object({
  id: z.string(),
  pod: z.string(),
  tenant: z.string(),
  name: z.string().nullable(),
  idleTimeoutSeconds: z.number().int().positive(),
  lastActivityAt: z.string(),
  expiresAt: z.string(),
  lastCommand: z.string().nullable(),
  /** Its open port links as its Lease holds them (absent from agents that predate them); no tokens. */
  links: z.array(PortLinkRecordSchema).optional(),
});
export type SandboxSnapshot = z.infer<typeof SandboxSnapshotSchema>;

/**
 * One of the agent's recent executions, as the snapshot carries them (newest first, bounded), so
 * a dashboard opened after they ran still lists them. Times are the agent's ISO times.
 */
export const ExecutionSnapshotSchema = z.object({
  requestId: z.string(),
  tenant: z.string(),
  pod: z.string(),
  commandPreview: z.string(),
  startedAt: z.string(),
  /** null while the command runs. */
  finishedAt: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  timedOut: z.boolean(),
  durationMs: z.number().nonnegative().nullable(),
  queueMs: z.number().nonnegative().nullable(),
});
export type ExecutionSnapshot = z.infer<typeof ExecutionSnapshotSchema>;

/**
 * A process this agent started and whose exit it has not seen yet (its `process.started` without
 * a `process.exited`), as the snapshot carries them, so a dashboard opened later shows what runs.
 */
export const ProcessSnapshotSchema = z.object({
  /** Null for a chat request's own pod (the process ends with the request). */
  sandboxId: z.string().nullable(),
  pod: z.string(),
  tenant: z.string(),
  pid: z.number().int().positive(),
  commandPreview: z.string(),
  tty: z.boolean(),
  startedAt: z.string(),
});
export type ProcessSnapshot = z.infer<typeof ProcessSnapshotSchema>;

export const PoolSnapshotSchema = z.object({
  region: z.string(),
  agentId: z.string(),
  at: z.string(),
  poolSize: z.number().int().nonnegative(),
  recycle: z.enum(["replace", "scrub", "reuse-same-tenant"]),
  pods: z.array(PodSnapshotSchema),
  queue: z.object({
    depth: z.number().int().nonnegative(),
    waiters: z.array(
      z.object({ requestId: z.string(), tenant: z.string(), waitedMs: z.number().nonnegative() }),
    ),
  }),
  totals: z.object({
    acquisitions: z.number().int().nonnegative(),
    conflicts: z.number().int().nonnegative(),
    queueTimeouts: z.number().int().nonnegative(),
    acquireP50Ms: z.number().nonnegative().nullable(),
    acquireP99Ms: z.number().nonnegative().nullable(),
  }),
  /** Sandboxes that live across requests (absent from agents that predate them). */
  sandboxes: z.array(SandboxSnapshotSchema).optional(),
  /** This agent's recent executions, newest first (bounded; absent from agents that predate it). */
  executions: z.array(ExecutionSnapshotSchema).optional(),
  /** The running processes this agent started (absent from agents that predate them). */
  processes: z.array(ProcessSnapshotSchema).optional(),
  /**
   * The pids limit of a sandbox pod as it sees it in its own cgroup (`pids.max`), checked once per
   * agent: `unlimited` is true for "max". Absent until checked (or from agents that predate it).
   */
  sandboxPids: z
    .object({
      pidsMax: z.string().nullable(),
      unlimited: z.boolean(),
      pod: z.string(),
      checkedAt: z.string(),
    })
    .optional(),
});
export type PoolSnapshot = z.infer<typeof PoolSnapshotSchema>;

// The pool event stream's schema lives in shared/events.ts (one discriminated union of every event).
export {
  POOL_EVENT_TYPES,
  type PoolEvent,
  PoolEventSchema,
  type PoolEventType,
} from "./events.ts";
