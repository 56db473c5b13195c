import type { z } from "zod";
import {
  DirListingSchema,
  ExecRequestSchema,
  ExecResultSchema,
  FileWriteResultSchema,
  PidSchema,
  ProcessInfoSchema,
  ProcessListSchema,
  ProcessOffsetSchema,
  ProcessOutputQuerySchema,
  ProcessOutputSchema,
  ProcessResizeRequestSchema,
  ProcessSignalRequestSchema,
  ProcessStartRequestSchema,
  ProcessStdinQuerySchema,
  parseSandboxId,
  SANDBOX_EXEC_NETWORK_REFUSAL,
  SANDBOX_FILE_SIZE_HEADER,
  SANDBOX_LIMITS,
  type Sandbox,
  SandboxCreateRequestSchema,
  SandboxListSchema,
  SandboxNameSchema,
  SandboxNetworkSchema,
  SandboxSchema,
  StdinResultSchema,
  TERMINAL_SUBPROTOCOL,
  TerminalClientMessageSchema,
  TerminalQuerySchema,
  TerminalServerMessageSchema,
} from "../../shared/api.ts";
import { NetworkPolicySchema } from "../../shared/egress-policy.ts";
import { AppError, parseOrError } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { encodeJson, readJson, wantsEventStream } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { type RelaySpec, relayFrom } from "../relay/from-context.ts";
import { connectedAgents } from "../relay/relay.ts";

/**
 * /v1/sandboxes: sandboxes that live across requests. A sandbox id names its region and cluster
 * (shared/api.ts), so every request about one goes to an agent of exactly that cluster — none
 * connected is `503 sandbox_cluster_unavailable`, never another cluster. A malformed id, or one of
 * a region this edge does not serve, is `404 sandbox_not_found`, like another tenant's.
 */

export const idParam = {
  name: "id",
  in: "path" as const,
  required: true,
  description: "sandbox id (opaque)",
};
const pathParam = {
  name: "path",
  in: "path" as const,
  required: true,
  description:
    "file or directory, relative to /workspace (or absolute under it); a directory answers a JSON listing",
};

/**
 * A directory answers one page of its listing: at most SANDBOX_LIMITS.maxListEntries entries and
 * maxListBytes of JSON entries (the exec server stops walking there, so no component holds more);
 * `truncated: true` with `next` says more follow.
 */
const listParams = [
  {
    name: "recursive",
    in: "query" as const,
    required: false,
    description: "`1`: the whole tree, breadth-first",
  },
  {
    name: "limit",
    in: "query" as const,
    required: false,
    description: `most entries on the page (default and maximum ${SANDBOX_LIMITS.maxListEntries}; the page also stops at ${SANDBOX_LIMITS.maxListBytes / 1024 / 1024} MiB of entries)`,
  },
  {
    name: "after",
    in: "query" as const,
    required: false,
    description: "the previous page's `next`: the page continues after that name",
  },
];

/** The region and cluster a sandbox id names, or null when it is malformed or of a region not served here. */
export function sandboxWhere(
  regions: readonly string[],
  id: string,
): { region: string; cluster: string } | null {
  const where = parseSandboxId(id);
  return where && regions.includes(where.region) ? where : null;
}

/** Where the sandbox of this request's `:id` lives; throws sandbox_not_found when it cannot be ours. */
export function sandboxHome(c: AppContext): { id: string; region: string; cluster: string } {
  const id = c.req.param("id") ?? "";
  const where = sandboxWhere(c.get("deps").config.regions, id);
  if (!where) throw new AppError("sandbox_not_found", `no sandbox ${id.slice(0, 100)}`);
  return { id, ...where };
}

/** The relay target of a sandbox's request: its own region and cluster, nothing else. */
function sandboxTarget(c: AppContext): { regions: string[]; cluster: string } {
  const home = sandboxHome(c);
  return { regions: [home.region], cluster: home.cluster };
}

/** Relay this request to the sandbox's own cluster, at the agent's same path. */
export function relayToSandbox(
  c: AppContext,
  spec: Omit<RelaySpec, "path" | "regions" | "cluster" | "connection">,
) {
  return relayFrom(c, { ...spec, path: agentPath(c), ...sandboxTarget(c) });
}

/** A request without a body, relayed to the sandbox's cluster at the agent's same path. */
async function relayAsIs(c: AppContext, method: "GET" | "DELETE", accept = "application/json") {
  return finishRelay(c, await relayToSandbox(c, { method, accept }));
}

/** A validated JSON body, re-encoded and relayed to the sandbox's cluster at the agent's same path. */
async function relayJson(c: AppContext, schema: z.ZodType, what: string) {
  const parsed = parseOrError(schema, readJson(c), what);
  if (!parsed.ok) throw parsed.error;
  return finishRelay(c, await relayToSandbox(c, { method: "POST", body: encodeJson(parsed.value) }));
}

/** The path as the agent sees it: the request's own (still percent-encoded) path and query. */
function agentPath(c: AppContext): string {
  const url = new URL(c.req.url);
  return `${url.pathname}${url.search}`;
}

export const createSandboxRoute: RouteDef = {
  method: "POST",
  path: "/v1/sandboxes",
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary:
      "Create a sandbox (201), or with `name` return the tenant's live one of that name (200; 409 sandbox_name_conflict when the request's network or secrets differ from its)",
    tags: ["sandboxes"],
    request: SandboxCreateRequestSchema,
    response: SandboxSchema,
    successStatus: "201",
  },
  async handler(c) {
    const parsed = parseOrError(SandboxCreateRequestSchema, readJson(c), "sandbox request");
    if (!parsed.ok) throw parsed.error;
    const out = await relayFrom(c, { method: "POST", path: "/v1/sandboxes", body: encodeJson(parsed.value) });
    return finishRelay(c, out);
  },
};

export const listSandboxesRoute: RouteDef = {
  method: "GET",
  path: "/v1/sandboxes",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Your live sandboxes in every region and cluster (`?name=` filters)",
    tags: ["sandboxes"],
    response: SandboxListSchema,
    parameters: [{ name: "name", in: "query", description: "only the sandbox of this name" }],
  },
  async handler(c) {
    const name = c.req.query("name");
    if (name !== undefined) {
      const n = parseOrError(SandboxNameSchema, name, "name");
      if (!n.ok) throw n.error;
    }
    const { config, tunnels } = c.get("deps");
    const path = name === undefined ? "/v1/sandboxes" : `/v1/sandboxes?name=${encodeURIComponent(name)}`;
    // One agent per cluster of each region: each cluster knows only its own sandboxes.
    const targets = (
      await Promise.all(
        config.regions.map(async (region) => {
          const byCluster = new Map<string, string>();
          for (const a of await connectedAgents(tunnels, region)) {
            const cluster = a.cluster ?? "default";
            if (!byCluster.has(cluster)) byCluster.set(cluster, a.connId);
          }
          return [...byCluster.values()].map((connection) => ({ region, connection }));
        }),
      )
    ).flat();
    const lists = await Promise.all(
      targets.map(async (t) => {
        const out = await relayFrom(c, {
          method: "GET",
          path,
          regions: [t.region],
          connection: t.connection,
          timeoutMs: Math.min(config.relayTimeoutMs, 15_000),
        });
        const parsed = SandboxListSchema.safeParse(await out.response.json().catch(() => null));
        return parsed.success ? parsed.data.sandboxes : [];
      }),
    );
    const sandboxes: Sandbox[] = lists.flat().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    return c.json({ sandboxes });
  },
};

export const getSandboxRoute: RouteDef = {
  method: "GET",
  path: "/v1/sandboxes/:id",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "One of your sandboxes",
    tags: ["sandboxes"],
    response: SandboxSchema,
    parameters: [idParam],
  },
  handler: (c) => relayAsIs(c, "GET"),
};

export const deleteSandboxRoute: RouteDef = {
  method: "DELETE",
  path: "/v1/sandboxes/:id",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Delete a sandbox (204): its pod, workspace and Lease are gone; its running commands are killed",
    tags: ["sandboxes"],
    parameters: [idParam],
    successStatus: "204",
  },
  handler: (c) => relayAsIs(c, "DELETE"),
};

export const sandboxExecRoute: RouteDef = {
  method: "POST",
  path: "/v1/sandboxes/:id/exec",
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary: "Run a command in the sandbox (same body, result and events as /v1/exec)",
    tags: ["sandboxes"],
    request: ExecRequestSchema,
    response: ExecResultSchema,
    sse: true,
    parameters: [idParam],
  },
  async handler(c) {
    const parsed = parseOrError(ExecRequestSchema, readJson(c), "exec request");
    if (!parsed.ok) throw parsed.error;
    if (parsed.value.network !== undefined)
      throw new AppError("invalid_request", SANDBOX_EXEC_NETWORK_REFUSAL);
    const sse = wantsEventStream(c);
    const out = await relayToSandbox(c, {
      method: "POST",
      body: encodeJson(parsed.value),
      accept: sse ? "text/event-stream" : "application/json",
      timeoutMs: parsed.value.timeoutSeconds * 1000 + c.get("deps").config.relayTimeoutMs,
    });
    return finishRelay(c, out);
  },
};

export const getNetworkRoute: RouteDef = {
  method: "GET",
  path: "/v1/sandboxes/:id/network",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "The sandbox's network policy (empty allow: no network)",
    tags: ["sandboxes"],
    response: SandboxNetworkSchema,
    parameters: [idParam],
  },
  handler: (c) => relayAsIs(c, "GET"),
};

export const putNetworkRoute: RouteDef = {
  method: "PUT",
  path: "/v1/sandboxes/:id/network",
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary:
      "Replace the sandbox's network policy: new connections follow it at once, open ones it forbids are closed",
    tags: ["sandboxes"],
    request: NetworkPolicySchema,
    response: SandboxNetworkSchema,
    parameters: [idParam],
  },
  async handler(c) {
    const parsed = parseOrError(NetworkPolicySchema, readJson(c), "network policy");
    if (!parsed.ok) throw parsed.error;
    return finishRelay(c, await relayToSandbox(c, { method: "PUT", body: encodeJson(parsed.value) }));
  },
};

const FILES_PATH = "/v1/sandboxes/:id/files/:path{.+}";

export const putFileRoute: RouteDef = {
  method: "PUT",
  path: FILES_PATH,
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  bodyLimit: "file",
  doc: {
    summary: "Write a file (raw bytes, up to MAX_FILE_BYTES): atomic, parent directories created",
    tags: ["sandboxes"],
    response: FileWriteResultSchema,
    requestContentType: "application/octet-stream",
    parameters: [idParam, pathParam],
  },
  async handler(c) {
    const body = c.get("bodyStream");
    // fetch() sends a body-less PUT as Content-Length: 0: refuse it rather than truncating a file
    // by accident; an empty file is written when the type says application/octet-stream.
    const empty = c.req.raw.body === null || c.req.header("Content-Length") === "0";
    if (empty && !/^application\/octet-stream\b/i.test(c.req.header("Content-Type") ?? "")) {
      throw new AppError("invalid_request", "PUT needs a body (Content-Type: application/octet-stream)");
    }
    const out = await relayToSandbox(c, { method: "PUT", body, contentType: "application/octet-stream" });
    return finishRelay(c, out);
  },
};

export const getFileRoute: RouteDef = {
  method: "GET",
  path: FILES_PATH,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Read a file (the exact bytes, with Content-Length) or list a directory (JSON; `?recursive=1`)",
    tags: ["sandboxes"],
    response: DirListingSchema,
    responseContentType: "application/octet-stream",
    parameters: [idParam, pathParam, ...listParams],
  },
  async handler(c) {
    return withContentLength(await relayAsIs(c, "GET", "*/*"));
  },
};

/** The agent's own file size (SANDBOX_FILE_SIZE_HEADER) as a real Content-Length on the streamed body. */
function withContentLength(res: Response): Response {
  const size = res.headers.get(SANDBOX_FILE_SIZE_HEADER);
  const headers = new Headers(res.headers);
  headers.delete(SANDBOX_FILE_SIZE_HEADER);
  if (size === null || !res.body || !/^\d+$/.test(size))
    return new Response(res.body, { status: res.status, headers });
  // A FixedLengthStream makes workerd send Content-Length (and fail the body if the agent sent a different length).
  const fixed = new FixedLengthStream(Number(size));
  res.body.pipeTo(fixed.writable).catch(() => {});
  headers.set("Content-Length", size);
  return new Response(fixed.readable, { status: res.status, headers });
}

/** GET /v1/sandboxes/:id/files — the listing of /workspace itself. */
export const listWorkspaceRoute: RouteDef = {
  ...getFileRoute,
  path: "/v1/sandboxes/:id/files",
  doc: {
    ...getFileRoute.doc,
    summary: "List /workspace (JSON, one page; `?recursive=1`, `limit`, `after`)",
    parameters: [idParam, ...listParams],
  },
};

export const deleteFileRoute: RouteDef = {
  method: "DELETE",
  path: FILES_PATH,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Delete a file or directory (204)",
    tags: ["sandboxes"],
    parameters: [idParam, pathParam],
    successStatus: "204",
  },
  handler: (c) => relayAsIs(c, "DELETE"),
};

// ---------- long-lived processes (issue 27; http exec mode: api mode answers 501 not_supported_in_api_mode) ----------

const PROCESSES_PATH = "/v1/sandboxes/:id/processes";
const pidParam = {
  name: "pid",
  in: "path" as const,
  required: true,
  description: "process id in the sandbox (from POST …/processes)",
};

/** `:pid` must look like one before anything is relayed; anything else is process_not_found. */
function checkPid(c: AppContext): void {
  const pid = c.req.param("pid") ?? "";
  if (!PidSchema.safeParse(pid).success) {
    throw new AppError("process_not_found", `no process ${pid.slice(0, 20)} in this sandbox`);
  }
}

export const startProcessRoute: RouteDef = {
  method: "POST",
  path: PROCESSES_PATH,
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary:
      "Start a long-lived process (201): `command` (sh -c) or `argv`; it runs until it exits, its `timeoutSeconds` (0 = none) or the sandbox ends",
    tags: ["processes"],
    request: ProcessStartRequestSchema,
    response: ProcessInfoSchema,
    successStatus: "201",
    parameters: [idParam],
  },
  handler: (c) => relayJson(c, ProcessStartRequestSchema, "process request"),
};

export const listProcessesRoute: RouteDef = {
  method: "GET",
  path: PROCESSES_PATH,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "The sandbox's processes: running ones, then recently exited ones with how they ended",
    tags: ["processes"],
    response: ProcessListSchema,
    parameters: [idParam],
  },
  handler: (c) => relayAsIs(c, "GET"),
};

export const getProcessRoute: RouteDef = {
  method: "GET",
  path: `${PROCESSES_PATH}/:pid`,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "One process: running or how it ended, and its output offsets",
    tags: ["processes"],
    response: ProcessInfoSchema,
    parameters: [idParam, pidParam],
  },
  handler(c) {
    checkPid(c);
    return relayAsIs(c, "GET");
  },
};

export const deleteProcessRoute: RouteDef = {
  method: "DELETE",
  path: `${PROCESSES_PATH}/:pid`,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Kill the process's group (SIGKILL) if it runs and forget it; answers how it ended",
    tags: ["processes"],
    response: ProcessInfoSchema,
    parameters: [idParam, pidParam],
  },
  handler(c) {
    checkPid(c);
    return relayAsIs(c, "DELETE");
  },
};

export const processOutputRoute: RouteDef = {
  method: "GET",
  path: `${PROCESSES_PATH}/:pid/output`,
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary:
      "The process's output (stdout and stderr interleaved) from byte offset `since`: JSON `{offset, next, dropped, data (base64), eof}`, or with Accept: text/event-stream a live stream of `output` events (id = the offset after them; reattach with `since` or Last-Event-ID) ending with one `exit` event",
    tags: ["processes"],
    response: ProcessOutputSchema,
    sse: true,
    parameters: [
      idParam,
      pidParam,
      { name: "since", in: "query", description: "byte offset to read from (default 0)" },
      { name: "maxBytes", in: "query", description: "JSON: at most this many bytes (≤ 1 MiB)" },
      {
        name: "waitMs",
        in: "query",
        description: "JSON: wait up to this long (≤ 30000) for bytes when there are none yet",
      },
      {
        name: "Last-Event-ID",
        in: "header",
        description: "stream: reattach after this id (when `since` is absent)",
      },
    ],
  },
  async handler(c) {
    checkPid(c);
    const q = parseOrError(ProcessOutputQuerySchema, c.req.query(), "output query");
    if (!q.ok) throw q.error;
    const sse = wantsEventStream(c);
    const url = new URL(c.req.url);
    const lastId = c.req.header("Last-Event-ID");
    // The agent hears only the headers the relay builder forwards: a reattach travels as `since`.
    if (sse && q.value.since === undefined && lastId !== undefined) {
      const since = ProcessOffsetSchema.safeParse(lastId.trim());
      if (!since.success) throw new AppError("invalid_request", "Last-Event-ID: not an output offset");
      url.searchParams.set("since", String(since.data));
    }
    const { relayTimeoutMs } = c.get("deps").config;
    const out = await relayFrom(c, {
      method: "GET",
      path: `${url.pathname}${url.search}`,
      ...sandboxTarget(c),
      accept: sse ? "text/event-stream" : "application/json",
      timeoutMs: (sse ? 0 : (q.value.waitMs ?? 0)) + relayTimeoutMs,
    });
    return finishRelay(c, out);
  },
};

export const processStdinRoute: RouteDef = {
  method: "POST",
  path: `${PROCESSES_PATH}/:pid/stdin`,
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary:
      "Write the body's bytes (≤ 1 MiB) to the process's stdin; `?eof=1` closes it after them. 409 process_exited (with its exitCode) once it ended",
    tags: ["processes"],
    response: StdinResultSchema,
    requestContentType: "application/octet-stream",
    parameters: [
      idParam,
      pidParam,
      { name: "eof", in: "query", description: "1: close stdin after these bytes" },
    ],
  },
  async handler(c) {
    checkPid(c);
    const q = parseOrError(ProcessStdinQuerySchema, c.req.query(), "stdin query");
    if (!q.ok) throw q.error;
    const out = await relayToSandbox(c, {
      method: "POST",
      body: c.get("body"),
      contentType: "application/octet-stream",
    });
    return finishRelay(c, out);
  },
};

export const processSignalRoute: RouteDef = {
  method: "POST",
  path: `${PROCESSES_PATH}/:pid/signal`,
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary: "Send a signal (SIGTERM, SIGINT, SIGKILL, …) to the process's group",
    tags: ["processes"],
    request: ProcessSignalRequestSchema,
    response: ProcessInfoSchema,
    parameters: [idParam, pidParam],
  },
  handler(c) {
    checkPid(c);
    return relayJson(c, ProcessSignalRequestSchema, "signal request");
  },
};

export const processResizeRoute: RouteDef = {
  method: "POST",
  path: `${PROCESSES_PATH}/:pid/resize`,
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary: "Resize the terminal of a process started with `tty: true` (409 not_a_tty otherwise)",
    tags: ["processes"],
    request: ProcessResizeRequestSchema,
    response: ProcessInfoSchema,
    parameters: [idParam, pidParam],
  },
  handler(c) {
    checkPid(c);
    return relayJson(c, ProcessResizeRequestSchema, "resize request");
  },
};

export const processTerminalRoute: RouteDef = {
  method: "GET",
  path: `${PROCESSES_PATH}/:pid/tty`,
  auth: "tenant",
  scope: "sandbox:exec",
  websocket: true,
  doc: {
    summary:
      'The terminal of a process started with `tty: true`, as a WebSocket (101): binary messages are terminal bytes both ways (to stdin; its output from the ring, from `since`), text messages JSON: to the server `{type:"resize",cols,rows}`; from it `{type:"exit",…}` (then close 1000), `{type:"dropped",bytes}`, `{type:"error",code,message}`. A browser passes its token as the subprotocol `bearer.<jwt>` next to `pi-sandbox.terminal.v1`. Closing the socket leaves the process running. Refused before the upgrade: 404 (sandbox, pid), 409 not_a_tty, 426 websocket_required, 501 in api exec mode',
    tags: ["processes"],
    websocket: {
      subprotocol: TERMINAL_SUBPROTOCOL,
      client: TerminalClientMessageSchema,
      server: TerminalServerMessageSchema,
    },
    parameters: [
      idParam,
      pidParam,
      {
        name: "since",
        in: "query",
        description: "output offset to attach at (default 0: what the ring holds)",
      },
      {
        name: "Sec-WebSocket-Protocol",
        in: "header",
        description: `\`${TERMINAL_SUBPROTOCOL}\` and, from a browser, \`bearer.<jwt>\` (instead of Authorization)`,
      },
    ],
  },
  async handler(c) {
    checkPid(c);
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw new AppError("websocket_required", "the terminal is a WebSocket: send an upgrade");
    }
    const q = parseOrError(TerminalQuerySchema, c.req.query(), "terminal query");
    if (!q.ok) throw q.error;
    // A client that offers subprotocols gets ours selected, or none fit: never the token entry.
    const offered = (c.req.header("Sec-WebSocket-Protocol") ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== "");
    if (offered.length > 0 && !offered.includes(TERMINAL_SUBPROTOCOL)) {
      throw new AppError("invalid_request", `offer the subprotocol ${TERMINAL_SUBPROTOCOL}`);
    }
    const out = await relayToSandbox(c, { method: "GET", websocket: true });
    const res = out.response;
    if (res.status !== 101 || !res.webSocket) return finishRelay(c, out);
    const headers = new Headers({ "X-Request-Id": c.get("requestId") });
    if (offered.length > 0) headers.set("Sec-WebSocket-Protocol", TERMINAL_SUBPROTOCOL);
    return new Response(null, { status: 101, webSocket: res.webSocket, headers });
  },
};

export const SANDBOX_ROUTES: readonly RouteDef[] = [
  createSandboxRoute,
  listSandboxesRoute,
  getSandboxRoute,
  deleteSandboxRoute,
  sandboxExecRoute,
  getNetworkRoute,
  putNetworkRoute,
  putFileRoute,
  getFileRoute,
  listWorkspaceRoute,
  deleteFileRoute,
  startProcessRoute,
  listProcessesRoute,
  getProcessRoute,
  deleteProcessRoute,
  processOutputRoute,
  processStdinRoute,
  processSignalRoute,
  processResizeRoute,
  processTerminalRoute,
];
