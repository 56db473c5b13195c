import type { Context, Hono } from "hono";
import {
  PidSchema,
  type ProcessInfo,
  ProcessOffsetSchema,
  ProcessOutputQuerySchema,
  ProcessResizeRequestSchema,
  ProcessSignalRequestSchema,
  ProcessStartRequestSchema,
  ProcessStdinQuerySchema,
  TerminalQuerySchema,
} from "../../shared/api.ts";
import { AppError, err, errorResponse, ok, parseOrError, type Result } from "../../shared/errors.ts";
import type { ExecTarget, SandboxProcesses } from "../exec/executor.ts";
import { relayedSseResponse, wantsEventStream } from "../http/answers.ts";
import { type WebSocketUpgrade, webSocketRoute } from "../http/ws-route.ts";
import { commandPreview } from "../requests/leased-sandbox.ts";
import type { WebSocketSession } from "../tunnel/ws-session.ts";
import { type SandboxExecDeps, withSandbox } from "./exec.ts";
import type { SandboxVars } from "./routes.ts";
import { terminalSession } from "./terminal.ts";

type Ctx = Context<{ Variables: SandboxVars }>;

export interface ProcessRouteHelpers {
  /** The id, if it is well-formed and names this region and cluster. */
  ownId(id: string): boolean;
  json(body: Uint8Array): Result<unknown>;
}

/**
 * /v1/sandboxes/:id/processes…: long-lived processes in a sandbox (issue 27 item 1). The state is in
 * the pod's exec server; every call is one use of the sandbox (its keep-alive, its fence, its
 * `sandbox_not_found` / `lease_lost`), so another tenant's sandbox is `sandbox_not_found` and a pid
 * of another sandbox is that pod's `process_not_found`. An open output stream is a use for as long
 * as it is open: watching a process keeps its sandbox from idling out; a process alone does not.
 */
export function processRoutes(
  app: Hono<{ Variables: SandboxVars }>,
  deps: SandboxExecDeps,
  h: ProcessRouteHelpers,
): void {
  const base = "/v1/sandboxes/:id/processes";

  /** One call on the sandbox's processes, answered as JSON (`status`) or its error. */
  const call = async <T>(
    c: Ctx,
    what: string,
    op: (
      p: SandboxProcesses,
      target: ExecTarget,
      signal: AbortSignal,
      env?: Record<string, string>,
    ) => Promise<Result<T>>,
  ): Promise<Response> => {
    const requestId = c.get("requestId");
    const r = await use(c, what, (sb, env) => sb.onProcesses((p, t, signal) => op(p, t, signal, env)));
    return r.ok ? c.json(r.value as object) : errorResponse(r.error, requestId);
  };

  const use = <T>(c: Ctx, what: string, fn: Parameters<typeof withSandbox<T>>[3]): Promise<Result<T>> => {
    const id = c.req.param("id") ?? "";
    if (!h.ownId(id)) return Promise.resolve({ ok: false, error: missing(id) });
    const ctx = {
      tenant: c.get("claims").tenant,
      requestId: c.get("requestId"),
      signal: c.req.raw.signal,
      what,
    };
    return withSandbox(deps, id, ctx, fn);
  };

  /** The `:pid` segment, or process_not_found for anything that is not one. */
  const pidOf = (c: Ctx): Result<number> => {
    const raw = c.req.param("pid") ?? "";
    return PidSchema.safeParse(raw).success
      ? ok(Number(raw))
      : {
          ok: false,
          error: new AppError("process_not_found", `no process ${raw.slice(0, 20)} in this sandbox`),
        };
  };

  const fail = (c: Ctx, e: AppError) => errorResponse(e, c.get("requestId"));

  app.post(base, async (c) => {
    const body = h.json(c.get("body"));
    if (!body.ok) return fail(c, body.error);
    const parsed = parseOrError(ProcessStartRequestSchema, body.value, "process request");
    if (!parsed.ok) return fail(c, parsed.error);
    const req = parsed.value;
    const preview = commandPreview(req.command ?? (req.argv ?? []).join(" "));
    // The sandbox's default env applies under the process's own, as for commands.
    const r = await use<ProcessInfo>(c, `process: ${preview}`, (sb, env) =>
      sb.startProcess(env || req.env ? { ...req, env: { ...env, ...req.env } } : req),
    );
    return r.ok ? c.json(r.value, 201) : fail(c, r.error);
  });

  app.get(base, (c) =>
    call(c, "list processes", async (p, t, signal) => {
      const l = await p.list(t, { signal });
      return l.ok ? ok({ processes: l.value }) : l;
    }),
  );

  app.get(`${base}/:pid`, (c) => {
    const pid = pidOf(c);
    if (!pid.ok) return fail(c, pid.error);
    return call(c, `process ${pid.value}`, (p, t, signal) => p.get(t, pid.value, { signal }));
  });

  app.delete(`${base}/:pid`, (c) => {
    const pid = pidOf(c);
    if (!pid.ok) return fail(c, pid.error);
    return call(c, `kill process ${pid.value}`, (p, t, signal) => p.remove(t, pid.value, { signal }));
  });

  app.post(`${base}/:pid/stdin`, (c) => {
    const pid = pidOf(c);
    if (!pid.ok) return fail(c, pid.error);
    const q = parseOrError(ProcessStdinQuerySchema, c.req.query(), "stdin query");
    if (!q.ok) return fail(c, q.error);
    const eof = q.value.eof === "1";
    const bytes = c.get("body");
    return call(c, `stdin of process ${pid.value}`, (p, t, signal) =>
      p.stdin(t, pid.value, bytes, eof, { signal }),
    );
  });

  /** A pid route whose JSON body `parse` validates; `run` gets the pid and the body. */
  const withBody =
    <T>(parse: (body: unknown) => Result<T>, run: (c: Ctx, pid: number, body: T) => Promise<Response>) =>
    (c: Ctx) => {
      const pid = pidOf(c);
      if (!pid.ok) return fail(c, pid.error);
      const body = h.json(c.get("body"));
      if (!body.ok) return fail(c, body.error);
      const parsed = parse(body.value);
      return parsed.ok ? run(c, pid.value, parsed.value) : fail(c, parsed.error);
    };

  app.post(
    `${base}/:pid/signal`,
    withBody(
      (b) => parseOrError(ProcessSignalRequestSchema, b, "signal request"),
      (c, pid, { signal: name }) =>
        call(c, `${name} to process ${pid}`, (p, t, signal) => p.signal(t, pid, name, { signal })),
    ),
  );

  app.post(
    `${base}/:pid/resize`,
    withBody(
      (b) => parseOrError(ProcessResizeRequestSchema, b, "resize request"),
      (c, pid, size) =>
        call(c, `resize process ${pid}`, (p, t, signal) => p.resize(t, pid, size, { signal })),
    ),
  );

  app.get(`${base}/:pid/output`, (c) => {
    const pid = pidOf(c);
    if (!pid.ok) return fail(c, pid.error);
    const q = parseOrError(ProcessOutputQuerySchema, c.req.query(), "output query");
    if (!q.ok) return fail(c, q.error);
    if (!wantsEventStream(c.req.header("accept"))) {
      return call(c, `output of process ${pid.value}`, (p, t, signal) =>
        p.output(t, pid.value, q.value, { signal }),
      );
    }
    let since = q.value.since;
    const lastId = c.req.header("last-event-id");
    if (since === undefined && lastId !== undefined) {
      const parsed = ProcessOffsetSchema.safeParse(lastId.trim());
      if (!parsed.success)
        return fail(c, new AppError("invalid_request", "Last-Event-ID: not an output offset"));
      since = parsed.data;
    }
    return streamOutput(c, pid.value, since);
  });

  /**
   * The exec server's SSE stream, byte for byte (its ids are offsets). The use of the sandbox lasts
   * until the stream ends, so the stream is under the sandbox's signal: deleted or lost, it breaks
   * (the client reattaches and hears why).
   */
  const streamOutput = (c: Ctx, pid: number, since: number | undefined): Promise<Response> =>
    new Promise<Response>((answer) => {
      use(c, `output of process ${pid}`, async (sb) => {
        const s = await sb.onProcesses((p, t, signal) => p.stream(t, pid, since, { signal }));
        if (!s.ok) return s;
        let ended: () => void = () => {};
        const done = new Promise<void>((resolve) => {
          ended = resolve;
        });
        answer(
          relayedSseResponse(s.value, {
            requestId: c.get("requestId"),
            // The caller left, or the sandbox went (deleted, lease lost): the use ends either way.
            signal: AbortSignal.any([c.req.raw.signal, sb.lease.lost]),
            onEnd: () => ended(),
          }),
        );
        await done;
        return ok(undefined);
      }).then((r) => {
        // Only an error before the head answers here; after it the response is already out.
        if (!r.ok) answer(fail(c, r.error));
      });
    });

  /**
   * The terminal of a tty process (issue 27 item 2), a WebSocket session: attach at `?since=`
   * (default 0: what the ring still holds), output from the ring, stdin and resize through the one
   * exec-server client. Refused before any upgrade: another tenant's sandbox (404), an unknown pid
   * (404), a process without a tty (409 not_a_tty), api exec mode (501). Like an open output
   * stream, an open terminal is a use of the sandbox; closing it never touches the process.
   */
  const terminal = (up: WebSocketUpgrade): Promise<Result<WebSocketSession>> => {
    const c = up.context;
    const pid = pidOf(c);
    if (!pid.ok) return Promise.resolve(pid);
    const q = parseOrError(TerminalQuerySchema, up.query, "terminal query");
    if (!q.ok) return Promise.resolve(q);
    const since = q.value.since ?? 0;
    return new Promise((answer) => {
      use(c, `terminal of process ${pid.value}`, async (sb) => {
        const info = await sb.onProcesses((p, t, signal) => p.get(t, pid.value, { signal }));
        if (!info.ok) return info;
        if (!info.value.tty) {
          return err(new AppError("not_a_tty", `process ${pid.value} was started without tty: true`));
        }
        const detach = new AbortController();
        const stream = await sb.onProcesses(
          (p, t, signal) => p.stream(t, pid.value, since, { signal }),
          detach.signal,
        );
        if (!stream.ok) return stream;
        let ended: () => void = () => {};
        const done = new Promise<void>((resolve) => {
          ended = resolve;
        });
        answer(
          ok(
            terminalSession({
              output: stream.value,
              stdin: (bytes) =>
                sb.onProcesses((p, t, signal) => p.stdin(t, pid.value, bytes, false, { signal })),
              resize: (size) => sb.onProcesses((p, t, signal) => p.resize(t, pid.value, size, { signal })),
              end: () => {
                detach.abort();
                ended();
              },
            }),
          ),
        );
        await done;
        return ok(undefined);
      }).then((r) => {
        // Only a refusal before the session answers here; after it the session is out.
        if (!r.ok) answer(r);
      });
    });
  };
  webSocketRoute(app, `${base}/:pid/tty`, terminal);
}

const missing = (id: string) => new AppError("sandbox_not_found", `no sandbox ${id}`);
