import type { IncomingMessage, ServerResponse } from "node:http";
import * as z from "zod/mini";
import { encodeSse, encodeSseComment } from "../../shared/sse.ts";
import type { ServerConfig } from "./config.ts";
import {
  exitEvent,
  type ProcessEntry,
  type ProcessTable,
  processInfo,
  type TableError,
  type TableResult,
} from "./process-table.ts";
import {
  PROCESS_SIGNALS,
  type ProcessList,
  type ProcessOutput,
  type ProcessOutputEvent,
  type StdinResult,
} from "./protocol.ts";
import {
  checkCwd,
  ENV_NAME,
  MAX_COMMAND_BYTES,
  MAX_ENV_ENTRIES,
  MAX_ENV_VALUE_BYTES,
  MAX_STDIN_BYTES,
  readBody,
  resolveCwd,
} from "./request.ts";
import { sendError, sendJson } from "./respond.ts";
import { commandEnv } from "./run-command.ts";

/** The longest `timeoutSeconds`: a week (a sandbox rarely lives that long; setTimeout's limit is ~24 days). */
const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;
const MIN_RING_BYTES = 4096;
const MAX_TERM_SIDE = 1000;
const MAX_READ_BYTES = 1024 * 1024;
const MAX_WAIT_MS = 30_000;
/** An SSE event carries at most this many output bytes (base64 in JSON). */
const SSE_CHUNK_BYTES = 64 * 1024;
/** Keeps an idle stream open through proxies and tells a dead client apart. */
const SSE_PING_MS = 15_000;

const bytesAtMost = (max: number) => (s: string) => Buffer.byteLength(s) <= max;
const noNul = (s: string) => !s.includes("\0");

const envSchema = z
  .record(
    z.string().check(z.regex(ENV_NAME, "names are [A-Za-z_][A-Za-z0-9_]*")),
    z
      .string()
      .check(
        z.refine(bytesAtMost(MAX_ENV_VALUE_BYTES), `longer than ${MAX_ENV_VALUE_BYTES} bytes`),
        z.refine(noNul, "must not contain NUL"),
      ),
  )
  .check(
    z.refine((env) => Object.keys(env).length <= MAX_ENV_ENTRIES, `at most ${MAX_ENV_ENTRIES} variables`),
  );

const int = (min: number, max: number) => z.int().check(z.minimum(min), z.maximum(max));
const queryInt = (min: number, max: number) =>
  z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max));

function startSchema(maxRing: number) {
  return z
    .strictObject({
      command: z.optional(
        z
          .string()
          .check(
            z.minLength(1),
            z.refine(bytesAtMost(MAX_COMMAND_BYTES), `longer than ${MAX_COMMAND_BYTES} bytes`),
            z.refine(noNul, "must not contain NUL"),
          ),
      ),
      argv: z.optional(
        z.array(z.string().check(z.refine(noNul, "must not contain NUL"))).check(
          z.minLength(1),
          z.maxLength(4096),
          z.refine((a) => (a[0] ?? "").length > 0, "argv[0] must be a program name or path"),
          z.refine(
            (a) => a.reduce((n, s) => n + Buffer.byteLength(s), 0) <= MAX_COMMAND_BYTES,
            `longer than ${MAX_COMMAND_BYTES} bytes in all`,
          ),
        ),
      ),
      cwd: z.optional(z.string()),
      env: z.optional(envSchema),
      timeoutSeconds: z.optional(int(0, MAX_TIMEOUT_SECONDS)),
      ringBytes: z.optional(int(MIN_RING_BYTES, maxRing)),
      tty: z.optional(z.boolean()),
      cols: z.optional(int(1, MAX_TERM_SIDE)),
      rows: z.optional(int(1, MAX_TERM_SIDE)),
    })
    .check(
      z.refine((b) => (b.command === undefined) !== (b.argv === undefined), {
        message: "exactly one of command or argv is required",
        path: ["command"],
      }),
      z.refine((b) => b.tty === true || (b.cols === undefined && b.rows === undefined), {
        message: "cols and rows need tty: true",
        path: ["cols"],
      }),
    );
}

const offset = queryInt(0, Number.MAX_SAFE_INTEGER);
const outputQuery = z.strictObject({
  since: z.optional(offset),
  maxBytes: z.optional(queryInt(1, MAX_READ_BYTES)),
  waitMs: z.optional(queryInt(0, MAX_WAIT_MS)),
});
const infoQuery = z.strictObject({ waitMs: z.optional(queryInt(0, MAX_WAIT_MS)) });
const stdinQuery = z.strictObject({ eof: z.optional(z.enum(["0", "1"])) });
const signalBody = z.strictObject({ signal: z.enum(PROCESS_SIGNALS) });
const resizeBody = z.strictObject({ cols: int(1, MAX_TERM_SIDE), rows: int(1, MAX_TERM_SIDE) });
const pidSegment = queryInt(1, 2 ** 22);

/** "field: problem" from the first zod issue. */
function zodMessage(e: z.core.$ZodError): string {
  const issue = e.issues[0];
  if (!issue) return "invalid request";
  const where = issue.path.length > 0 ? issue.path.join(".") : "body";
  return `${where}: ${issue.message}`;
}

export interface ProcessRouteContext {
  table: ProcessTable;
  config: ServerConfig;
  /** The request's fence (token and fence already checked by the caller). */
  fence: number;
  /** True when a newer holder's fence arrived while this request was being read. */
  superseded(): boolean;
}

/** A request about one process of the table. */
interface PidCall {
  req: IncomingMessage;
  res: ServerResponse;
  ctx: ProcessRouteContext;
  e: ProcessEntry;
  url: URL;
}

const fail = (res: ServerResponse, e: TableError) =>
  sendError(
    res,
    e.status,
    e.code,
    e.message,
    e.code === "process_exited" ? { exitCode: e.exitCode ?? null, signal: e.signal ?? null } : {},
  );

/** `/processes[/<pid>[/output|/stdin|/signal]]`: the caller has passed the token and fence checks. */
export async function handleProcesses(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: ProcessRouteContext,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://sandbox");
  const parts = url.pathname.split("/").filter((p) => p.length > 0); // ["processes", pid?, action?]
  const method = req.method ?? "GET";
  if (parts.length === 1) {
    if (method === "POST") return start(req, res, ctx);
    req.resume();
    if (method !== "GET")
      return sendError(res, 405, "invalid_request", `${method} not allowed on /processes`);
    const list: ProcessList = { processes: ctx.table.list().map(processInfo) };
    return sendJson(res, 200, list);
  }
  const pid = pidSegment.safeParse(parts[1]);
  if (parts.length > 3 || !/^\d+$/.test(parts[1] ?? "")) {
    req.resume();
    return sendError(res, 404, "not_found", `no route ${method} ${url.pathname}`);
  }
  if (!pid.success) {
    // A number no pid of this kernel can have: no such process, like any other unknown pid.
    req.resume();
    return sendError(res, 404, "process_not_found", `no process ${parts[1]?.slice(0, 20)}`);
  }
  const found = ctx.table.get(pid.data);
  const action = parts[2];
  const route = `${method} ${action ?? ""}`;
  if (route === "POST stdin") {
    if (!found.ok) {
      req.resume();
      return fail(res, found);
    }
    return stdin({ req, res, ctx, e: found.value, url });
  }
  if (route === "POST signal" || route === "POST resize") {
    const raw = await readBody(req, 4096);
    if (!raw.ok) return bodyFailed(res, raw);
    if (!found.ok) return fail(res, found);
    const json = parseJson(raw.value);
    let done: TableResult<ProcessEntry>;
    if (action === "signal") {
      const body = signalBody.safeParse(json);
      if (!body.success) return sendError(res, 400, "invalid_request", zodMessage(body.error));
      done = await ctx.table.signal(found.value, body.data.signal);
    } else {
      const body = resizeBody.safeParse(json);
      if (!body.success) return sendError(res, 400, "invalid_request", zodMessage(body.error));
      done = await ctx.table.resize(found.value, body.data);
    }
    if (!done.ok) return fail(res, done);
    return sendJson(res, 200, processInfo(done.value));
  }
  req.resume();
  if (route !== "GET " && route !== "DELETE " && route !== "GET output") {
    return sendError(res, 404, "not_found", `no route ${method} ${url.pathname}`);
  }
  if (!found.ok) return fail(res, found);
  if (route === "GET ") return getInfo({ req, res, ctx, e: found.value, url });
  if (route === "DELETE ") return sendJson(res, 200, processInfo(await ctx.table.remove(found.value)));
  return output({ req, res, ctx, e: found.value, url });
}

/** `GET /processes/<pid>[?waitMs=N]`: with a wait, answers once it has exited or N ms passed (the agent's exit watch). */
async function getInfo({ res, e, url }: PidCall): Promise<void> {
  const query = infoQuery.safeParse(Object.fromEntries(url.searchParams));
  if (!query.success) return sendError(res, 400, "invalid_request", zodMessage(query.error));
  const wait = query.data.waitMs ?? 0;
  if (wait > 0 && e.result === undefined) {
    const gone = new AbortController();
    res.on("close", () => gone.abort());
    const until = Date.now() + wait;
    // Output wakes the wait too: go on waiting until it has exited or the time is up.
    while (e.result === undefined && !gone.signal.aborted && Date.now() < until) {
      await waitFor((wake) => e.subscribe(wake), until - Date.now(), gone.signal);
    }
  }
  sendJson(res, 200, processInfo(e));
}

function bodyFailed(res: ServerResponse, raw: { status: 400 | 413; message: string }): void {
  sendError(res, raw.status, raw.status === 413 ? "payload_too_large" : "invalid_request", raw.message);
}

function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch {
    return undefined;
  }
}

async function start(req: IncomingMessage, res: ServerResponse, ctx: ProcessRouteContext): Promise<void> {
  const raw = await readBody(req);
  if (!raw.ok) return bodyFailed(res, raw);
  const json = parseJson(raw.value);
  if (json === undefined) return sendError(res, 400, "invalid_request", "body: not valid JSON");
  const limits = ctx.config.processes;
  const body = startSchema(limits.ringTotalBytes).safeParse(json);
  if (!body.success) return sendError(res, 400, "invalid_request", zodMessage(body.error));
  const lexical = body.data.cwd === undefined ? undefined : checkCwd(body.data.cwd, ctx.config.workspace);
  if (lexical !== undefined && typeof lexical !== "string") {
    return sendError(res, 400, "invalid_request", lexical.ok ? "cwd: invalid" : lexical.message);
  }
  const cwd = await resolveCwd(lexical, ctx.config.workspace);
  if (!cwd.ok) return sendError(res, cwd.status, "invalid_request", cwd.message);
  if (ctx.superseded()) {
    return sendError(res, 409, "stale_lease", `fencing token ${ctx.fence} was superseded`);
  }
  const { command, argv } = body.data;
  const started = await ctx.table.start({
    program: argv !== undefined ? { argv } : { command: command ?? "" },
    cwd: cwd.value,
    env: commandEnv(ctx.config.workspace, body.data.env),
    timeoutMs: (body.data.timeoutSeconds ?? 0) * 1000,
    ringBytes: body.data.ringBytes ?? limits.ringBytes,
    fence: ctx.fence,
    ...(body.data.tty ? { tty: { cols: body.data.cols ?? 80, rows: body.data.rows ?? 24 } } : {}),
  });
  if (!started.ok) return fail(res, started);
  sendJson(res, 201, processInfo(started.value));
}

async function stdin({ req, res, ctx, e, url }: PidCall): Promise<void> {
  const query = stdinQuery.safeParse(Object.fromEntries(url.searchParams));
  if (!query.success) {
    req.resume();
    return sendError(res, 400, "invalid_request", zodMessage(query.error));
  }
  const raw = await readBody(req, MAX_STDIN_BYTES);
  if (!raw.ok) return bodyFailed(res, raw);
  const wrote = await ctx.table.writeStdin(e, raw.value, query.data.eof === "1");
  if (!wrote.ok) return fail(res, wrote);
  const result: StdinResult = { ...wrote.value, stdinOpen: e.stdinOpen };
  sendJson(res, 200, result);
}

/**
 * Waits until `subscribe`'s wake fires, `ms` pass, or `signal` aborts (the client went away),
 * leaving no timer or listener behind: a stream loops through this once per output event.
 */
function waitFor(
  subscribe: (wake: () => void) => () => void,
  ms: number,
  signal: AbortSignal,
): Promise<"news" | "timeout"> {
  return new Promise((resolve) => {
    let unsubscribe = () => {};
    const finish = (how: "news" | "timeout") => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      unsubscribe();
      resolve(how);
    };
    const onAbort = () => finish("timeout");
    const timer = setTimeout(() => finish("timeout"), ms);
    signal.addEventListener("abort", onAbort, { once: true });
    unsubscribe = subscribe(() => finish("news"));
    if (signal.aborted) finish("timeout");
  });
}

const onDrain = (res: ServerResponse) => (wake: () => void) => {
  res.once("drain", wake);
  return () => {
    res.off("drain", wake);
  };
};

async function output({ req, res, ctx, e, url }: PidCall): Promise<void> {
  const query = outputQuery.safeParse(Object.fromEntries(url.searchParams));
  if (!query.success) return sendError(res, 400, "invalid_request", zodMessage(query.error));
  const sse = (req.headers.accept ?? "").includes("text/event-stream");
  const lastId = req.headers["last-event-id"];
  let since = query.data.since;
  if (since === undefined && sse && typeof lastId === "string") {
    const parsed = offset.safeParse(lastId.trim());
    if (!parsed.success) return sendError(res, 400, "invalid_request", "Last-Event-ID: not an offset");
    since = parsed.data;
  }
  const from = ctx.table.read(e, since ?? 0, 0);
  if (!from.ok) return fail(res, from);
  const gone = new AbortController();
  res.on("close", () => gone.abort());

  if (!sse) {
    const max = query.data.maxBytes ?? MAX_READ_BYTES;
    const wait = query.data.waitMs ?? 0;
    if (e.ring.end === (since ?? 0) && e.result === undefined && wait > 0) {
      await waitFor((wake) => e.subscribe(wake), wait, gone.signal);
    }
    const r = ctx.table.read(e, since ?? 0, max);
    if (!r.ok) return fail(res, r);
    const body: ProcessOutput = {
      offset: r.value.offset,
      next: r.value.next,
      dropped: r.value.dropped,
      data: r.value.data.toString("base64"),
      eof: e.result !== undefined && r.value.next === e.ring.end,
    };
    return sendJson(res, 200, body);
  }

  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
  let at = since ?? 0;
  while (!gone.signal.aborted) {
    const r = e.ring.read(at, SSE_CHUNK_BYTES);
    if (r.data.length > 0 || r.dropped > 0) {
      const event: ProcessOutputEvent = {
        offset: r.offset,
        dropped: r.dropped,
        data: r.data.toString("base64"),
      };
      at = r.next;
      // A slow reader waits for the socket here while the ring moves on: its next read counts the drop.
      res.write(encodeSse({ event: "output", id: String(r.next), data: JSON.stringify(event) }));
      while (res.writableNeedDrain && !gone.signal.aborted) {
        await waitFor(onDrain(res), SSE_PING_MS, gone.signal);
      }
      continue;
    }
    if (e.result !== undefined) {
      res.end(encodeSse({ event: "exit", id: String(at), data: JSON.stringify(exitEvent(e)) }));
      return;
    }
    const how = await waitFor((wake) => e.subscribe(wake), SSE_PING_MS, gone.signal);
    if (how === "timeout" && !gone.signal.aborted) res.write(encodeSseComment("ping"));
  }
}
