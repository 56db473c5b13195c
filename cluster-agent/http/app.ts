import { Hono } from "hono";
import type { Logger } from "pino";
import {
  type ChatEvent,
  type ChatResponse,
  type ExecRequest,
  ExecRequestSchema,
  type ExecResult,
  LIMITS,
  type PoolSnapshot,
  type RelayChatRequest,
  RelayChatRequestSchema,
  SCOPES,
  type Scope,
} from "../../shared/api.ts";
import { AppError, errorResponse, parseOrError, type Result, toAppError } from "../../shared/errors.ts";
import { POOL_SSE_EVENTS } from "../../shared/events.ts";
import { type RelayClaims, type RelayVerifier, STREAMED_BODY } from "../../shared/relay-signing.ts";
import { AGENT_TIMING_HEADER, formatServerTiming, Spans, spansForLog } from "../../shared/spans.ts";
import type { EventBus } from "../events/bus.ts";
import type { ExecRequestContext } from "../requests/exec-request.ts";
import { isStreamedUpload, type SandboxVars } from "../sandboxes/routes.ts";
import { bodyTrailerOf } from "../tunnel/body-trailer.ts";
import { answerExec, chatEventWithRegion, STREAM_PING_MS, withRegion } from "./answers.ts";
import { sseResponse, wantsEventStream } from "./sse.ts";
import { verifiedBody } from "./streamed-body.ts";

export interface ChatContext {
  tenant: string;
  requestId: string;
  signal: AbortSignal;
  emit: (e: ChatEvent) => void;
}

/** Everything the agent's HTTP surface is composed from; `main.ts` wires the real ones. */
export interface AgentAppDeps {
  agentId: string;
  region: string;
  relay: RelayVerifier;
  exec(req: ExecRequest, ctx: ExecRequestContext): Promise<Result<ExecResult>>;
  /**
   * The chat loop, or why chat is unavailable (e.g. no model configured): then every chat request
   * gets that error as JSON, streamed or not, before anything else happens.
   */
  chat: ((req: RelayChatRequest, ctx: ChatContext) => Promise<Result<ChatResponse>>) | AppError;
  snapshot(): PoolSnapshot;
  bus: EventBus;
  /** Informers synced and able to hand out pods. */
  ready(): boolean;
  logger?: Logger;
  /** The /v1/sandboxes routes (cluster-agent/sandboxes) and the larger body limit of file uploads. */
  sandboxes?: { routes: Hono<{ Variables: SandboxVars }>; maxFileBytes: number };
  /** The /v1/secrets routes (cluster-agent/secrets). */
  secrets?: Hono<{ Variables: SandboxVars }>;
}

type Vars = SandboxVars;

const EVENTS_PING_MS = 15_000;

export function createAgentApp(deps: AgentAppDeps): Hono<{ Variables: Vars }> {
  const app = new Hono<{ Variables: Vars }>();

  app.onError((e, c) => {
    const error = toAppError(e);
    const requestId = c.get("requestId") ?? "";
    if (error.code === "internal") deps.logger?.error({ err: e, requestId }, "unhandled error");
    return errorResponse(error, requestId);
  });
  app.notFound((c) => errorResponse(new AppError("not_found", `no route ${c.req.method} ${c.req.path}`), ""));

  app.get("/healthz", (c) => c.json({ ok: true, agentId: deps.agentId, region: deps.region }));
  app.get("/readyz", (c) =>
    deps.ready()
      ? c.json({ ready: true })
      : errorResponse(new AppError("shutting_down", "not ready: caches not synced or shutting down"), ""),
  );

  // Every /v1 route is served only for a relay the edge signed for this very request.
  app.use("/v1/*", async (c, next) => {
    const spans = new Spans();
    const endVerify = spans.start("verify", "relay signature + replay");
    const fileUpload = deps.sandboxes !== undefined && isStreamedUpload(c.req.method, c.req.path);
    const limit = fileUpload && deps.sandboxes ? deps.sandboxes.maxFileBytes : LIMITS.requestBodyBytes;
    const declared = Number(c.req.header("content-length") ?? "0");
    if (declared > limit) {
      return errorResponse(new AppError("payload_too_large", `body exceeds ${limit} bytes`), "");
    }
    // A body that streams through the tunnel (a file upload, a port link's request) is signed in its trailer, checked as
    // it ends (streamed-body.ts); any other body is read whole here and checked against the head.
    const trailer = bodyTrailerOf(c.req.raw);
    if (trailer && !fileUpload) {
      return errorResponse(new AppError("invalid_request", "only a file upload may stream its body"), "");
    }
    const body = trailer ? new Uint8Array(0) : new Uint8Array(await c.req.arrayBuffer());
    if (body.byteLength > limit) {
      return errorResponse(new AppError("payload_too_large", `body exceeds ${limit} bytes`), "");
    }
    const url = new URL(c.req.url);
    const verified = await deps.relay.verify({
      token: c.req.header("x-relay-signature"),
      method: c.req.method,
      path: url.pathname + url.search,
      body: trailer ? STREAMED_BODY : body,
    });
    if (!verified.ok) {
      deps.logger?.warn({ code: verified.error.code, path: url.pathname }, "relay refused");
      return errorResponse(verified.error, "");
    }
    endVerify();
    const claims = verified.value;
    let refused: AppError | null = null;
    if (trailer && c.req.raw.body) {
      c.set(
        "bodyStream",
        verifiedBody(c.req.raw.body, {
          limit,
          trailer,
          verify: (t, passed) => deps.relay.verifyTrailer(t, claims, passed),
          onRefused: (e) => {
            refused = e;
            deps.logger?.warn({ code: e.code, path: url.pathname }, "streamed body refused");
          },
        }),
      );
    }
    c.set("claims", claims);
    c.set("body", body);
    c.set("requestId", claims.requestId);
    c.set("spans", spans);
    await next();
    // The route saw only a broken body stream; the answer says why (nothing was committed).
    if (refused) c.res = errorResponse(refused, claims.requestId);
    c.res.headers.set("X-Request-Id", verified.value.requestId);
    // Before the body for a stream: then only what happened before its head.
    spans.add("total", spans.elapsed());
    c.res.headers.set(AGENT_TIMING_HEADER, formatServerTiming(spans.all));
    if (deps.logger?.isLevelEnabled("debug")) {
      deps.logger.debug(
        { requestId: verified.value.requestId, path: url.pathname, spans: spansForLog(spans.all) },
        "request timing",
      );
    }
  });

  const requireScope = (claims: RelayClaims, scope: Scope): AppError | null =>
    claims.scopes.includes(scope)
      ? null
      : new AppError("insufficient_scope", `this route needs the ${scope} scope`);

  const jsonBody = (body: Uint8Array): Result<unknown> => {
    try {
      return { ok: true, value: JSON.parse(new TextDecoder().decode(body)) };
    } catch {
      return { ok: false, error: new AppError("invalid_json", "the body is not valid JSON") };
    }
  };

  app.post("/v1/exec", async (c) => {
    const claims = c.get("claims");
    const requestId = c.get("requestId");
    const denied = requireScope(claims, SCOPES.exec);
    if (denied) return errorResponse(denied, requestId);
    const json = jsonBody(c.get("body"));
    if (!json.ok) return errorResponse(json.error, requestId);
    const parsed = parseOrError(ExecRequestSchema, json.value, "exec request");
    if (!parsed.ok) return errorResponse(parsed.error, requestId);
    const signal = c.req.raw.signal;
    const spans = c.get("spans");
    const base = { tenant: claims.tenant, requestId, signal, spans };
    return answerExec(
      { accept: c.req.header("accept"), signal, requestId, region: deps.region, spans },
      (onEvent) => deps.exec(parsed.value, onEvent ? { ...base, onEvent } : base),
    );
  });

  app.post("/v1/chat", async (c) => {
    const claims = c.get("claims");
    const requestId = c.get("requestId");
    const denied = requireScope(claims, SCOPES.chat);
    if (denied) return errorResponse(denied, requestId);
    if (deps.chat instanceof AppError) return errorResponse(deps.chat, requestId);
    const chat = deps.chat;
    const json = jsonBody(c.get("body"));
    if (!json.ok) return errorResponse(json.error, requestId);
    const parsed = parseOrError(RelayChatRequestSchema, json.value, "chat request");
    if (!parsed.ok) return errorResponse(parsed.error, requestId);
    const signal = c.req.raw.signal;
    if (wantsEventStream(c.req.header("accept"))) {
      return sseResponse(
        signal,
        async (w) => {
          // The chat loop emits its own terminal `done`/`error` event (none after an abort).
          await chat(parsed.value, {
            tenant: claims.tenant,
            requestId,
            signal,
            emit: (e) => w.send(e.type, chatEventWithRegion(e, deps.region)),
          });
        },
        { pingMs: STREAM_PING_MS, headers: { "X-Request-Id": requestId } },
      );
    }
    const result = await chat(parsed.value, { tenant: claims.tenant, requestId, signal, emit: () => {} });
    return result.ok ? c.json(withRegion(result.value, deps.region)) : errorResponse(result.error, requestId);
  });

  if (deps.sandboxes) app.route("/", deps.sandboxes.routes);
  if (deps.secrets) app.route("/", deps.secrets);

  app.get("/v1/pool", (c) => {
    const denied = requireScope(c.get("claims"), SCOPES.admin);
    if (denied) return errorResponse(denied, c.get("requestId"));
    return c.json(deps.snapshot());
  });

  app.get("/v1/events", (c) => {
    const denied = requireScope(c.get("claims"), SCOPES.admin);
    if (denied) return errorResponse(denied, c.get("requestId"));
    const signal = c.req.raw.signal;
    return sseResponse(
      signal,
      (w) =>
        new Promise<void>((resolve) => {
          w.send(POOL_SSE_EVENTS.snapshot, deps.snapshot());
          const off = deps.bus.on((e) => w.send(POOL_SSE_EVENTS.event, e));
          signal.addEventListener(
            "abort",
            () => {
              off();
              resolve();
            },
            { once: true },
          );
        }),
      { pingMs: EVENTS_PING_MS, headers: { "X-Request-Id": c.get("requestId") } },
    );
  });

  return app;
}

/**
 * The agent's Prometheus metrics, served on a port of their own (METRICS_PORT), never by the app
 * above: what reaches the relay port (the tunnel's handler, direct relays) cannot read them, and
 * a NetworkPolicy can open this port to the monitoring namespace alone (k8s/base).
 */
export function createMetricsApp(metrics: () => Promise<{ contentType: string; body: string }>): Hono {
  const app = new Hono();
  app.get("/metrics", async () => {
    const m = await metrics();
    return new Response(m.body, { headers: { "content-type": m.contentType } });
  });
  app.notFound((c) => errorResponse(new AppError("not_found", `no route ${c.req.method} ${c.req.path}`), ""));
  return app;
}
