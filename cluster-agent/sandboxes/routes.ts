import { Hono } from "hono";
import {
  type ExecRequest,
  ExecRequestSchema,
  PORT_LINK_RELAY_SCOPE,
  parseSandboxId,
  SANDBOX_EXEC_NETWORK_REFUSAL,
  SANDBOX_FILE_SIZE_HEADER,
  SANDBOX_LIMITS,
  SandboxCreateRequestSchema,
  SandboxNameSchema,
  SCOPES,
} from "../../shared/api.ts";
import { NetworkPolicySchema } from "../../shared/egress-policy.ts";
import { AppError, errorResponse, ok, parseOrError, type Result } from "../../shared/errors.ts";
import type { RelayClaims } from "../../shared/relay-signing.ts";
import type { Spans } from "../../shared/spans.ts";
import type { EventBus } from "../events/bus.ts";
import type { Executor, SandboxFiles, SandboxPorts, SandboxProcesses } from "../exec/executor.ts";
import { answerExec } from "../http/answers.ts";
import { runSandboxExec, type SandboxExecDeps, withSandbox } from "./exec.ts";
import { isPortProxy, portLinkRoutes } from "./port-link-routes.ts";
import { PortLinks } from "./port-links.ts";
import { processRoutes } from "./process-routes.ts";
import { EGRESS_CA_BUNDLE_PATH, type SandboxService } from "./service.ts";

export interface SandboxRoutesDeps {
  sandboxes: SandboxService;
  executor: Executor;
  files: SandboxFiles;
  /** Long-lived processes: http exec mode only (api mode answers `not_supported_in_api_mode`). */
  processes?: SandboxProcesses;
  /** A sandbox's ports, for port links: http exec mode only (api mode answers `not_supported_in_api_mode`). */
  ports?: SandboxPorts;
  /** The exec server's port in the pod: no link may reach it. */
  execServerPort: number;
  bus: EventBus;
  region: string;
  cluster: string;
  maxFileBytes: number;
  /** Counts file bytes moved (metrics). */
  onFileBytes?: (direction: "in" | "out", bytes: number) => void;
  /**
   * The CA bundle (public roots + the cluster's egress CA) written into the pod of a sandbox that
   * uses secrets, at EGRESS_CA_BUNDLE_PATH, so its tools trust the proxy's intercepted hosts.
   */
  egressCaBundle?: string;
  /** Upstream words of a failed command or file call, with the request id (see requests/leased-sandbox.ts). */
  log?: SandboxExecDeps["log"];
}

export interface SandboxVars {
  claims: RelayClaims;
  body: Uint8Array;
  /** A file upload's body as it streams from the edge, verified against its trailer as it ends. */
  bodyStream?: ReadableStream<Uint8Array>;
  requestId: string;
  /** This request's timing spans, reported to the edge in `server-timing`. */
  spans: Spans;
}

/**
 * Requests whose body streams (signed in its trailer) and may be as large as MAX_FILE_BYTES instead
 * of the usual request limit: file uploads and a port link's requests.
 */
export const isStreamedUpload = (method: string, path: string) =>
  (method === "PUT" && /^\/v1\/sandboxes\/[^/]+\/files(\/|$)/.test(path)) || isPortProxy(path);

/**
 * The agent's /v1/sandboxes routes, behind the relay check of the parent app. A malformed id, an id
 * of another cluster and another tenant's sandbox are all `sandbox_not_found`.
 */
export function sandboxRoutes(deps: SandboxRoutesDeps): Hono<{ Variables: SandboxVars }> {
  const app = new Hono<{ Variables: SandboxVars }>();
  const { sandboxes } = deps;

  app.use("/v1/sandboxes/*", async (c, next) => {
    // A link's request carries the link scope and may reach nothing but the link proxy.
    const needed = isPortProxy(c.req.path) ? PORT_LINK_RELAY_SCOPE : SCOPES.exec;
    if (!c.get("claims").scopes.includes(needed)) {
      return errorResponse(
        new AppError("insufficient_scope", `this route needs the ${needed} scope`),
        c.get("requestId"),
      );
    }
    await next();
  });
  app.use("/v1/sandboxes", async (c, next) => {
    if (!c.get("claims").scopes.includes(SCOPES.exec)) {
      return errorResponse(
        new AppError("insufficient_scope", `this route needs the ${SCOPES.exec} scope`),
        c.get("requestId"),
      );
    }
    await next();
  });

  const fail = (e: AppError, requestId: string) => errorResponse(e, requestId);
  const json = (body: Uint8Array): Result<unknown> => {
    try {
      return { ok: true, value: body.byteLength === 0 ? {} : JSON.parse(new TextDecoder().decode(body)) };
    } catch {
      return { ok: false, error: new AppError("invalid_json", "the body is not valid JSON") };
    }
  };
  /** The id, if it is well-formed and names this region and cluster. */
  const ownId = (id: string): boolean => {
    const where = parseSandboxId(id);
    return where !== null && where.region === deps.region && where.cluster === deps.cluster;
  };
  const missing = (id: string) => new AppError("sandbox_not_found", `no sandbox ${id}`);

  app.post("/v1/sandboxes", async (c) => {
    const requestId = c.get("requestId");
    const body = json(c.get("body"));
    if (!body.ok) return fail(body.error, requestId);
    const parsed = parseOrError(SandboxCreateRequestSchema, body.value, "sandbox request");
    if (!parsed.ok) return fail(parsed.error, requestId);
    const tenant = c.get("claims").tenant;
    const r = await sandboxes.create(tenant, requestId, parsed.value, c.req.raw.signal);
    if (!r.ok) return fail(r.error, requestId);
    if (r.value.created && parsed.value.secrets?.length) {
      const installed = await installCaBundle(tenant, r.value.sandbox.id, requestId, c.req.raw.signal);
      if (!installed.ok) {
        // A sandbox whose tools cannot trust the proxy would fail every secret's request: none at all.
        await sandboxes.delete(tenant, r.value.sandbox.id, requestId);
        return fail(installed.error, requestId);
      }
    }
    return c.json(r.value.sandbox, r.value.created ? 201 : 200);
  });

  const installCaBundle = (tenant: string, id: string, requestId: string, signal: AbortSignal) => {
    const bundle = deps.egressCaBundle;
    if (!bundle) return Promise.resolve(ok(undefined));
    const bytes = new TextEncoder().encode(bundle);
    return sandboxes.use(tenant, id, { requestId, signal, what: "install egress CA bundle" }, async (use) => {
      const w = await deps.files.write(use.target, EGRESS_CA_BUNDLE_PATH, bytes, {
        signal: use.signal,
        maxBytes: bytes.byteLength,
      });
      return w.ok ? ok(undefined) : w;
    });
  };

  app.get("/v1/sandboxes", (c) => {
    const name = c.req.query("name");
    if (name !== undefined) {
      const n = parseOrError(SandboxNameSchema, name, "name");
      if (!n.ok) return fail(n.error, c.get("requestId"));
    }
    return c.json({ sandboxes: sandboxes.list(c.get("claims").tenant, name) });
  });

  app.get("/v1/sandboxes/:id", (c) => {
    const id = c.req.param("id");
    if (!ownId(id)) return fail(missing(id), c.get("requestId"));
    const r = sandboxes.get(c.get("claims").tenant, id);
    return r.ok ? c.json(r.value) : fail(r.error, c.get("requestId"));
  });

  app.delete("/v1/sandboxes/:id", async (c) => {
    const id = c.req.param("id");
    const requestId = c.get("requestId");
    if (!ownId(id)) return fail(missing(id), requestId);
    const r = await sandboxes.delete(c.get("claims").tenant, id, requestId);
    return r.ok ? c.body(null, 204) : fail(r.error, requestId);
  });

  app.get("/v1/sandboxes/:id/network", (c) => {
    const id = c.req.param("id");
    if (!ownId(id)) return fail(missing(id), c.get("requestId"));
    const r = sandboxes.network(c.get("claims").tenant, id);
    return r.ok ? c.json(r.value) : fail(r.error, c.get("requestId"));
  });

  // Replaces the whole policy; every replica's proxy closes open connections it no longer allows.
  app.put("/v1/sandboxes/:id/network", async (c) => {
    const id = c.req.param("id");
    const requestId = c.get("requestId");
    if (!ownId(id)) return fail(missing(id), requestId);
    const body = json(c.get("body"));
    if (!body.ok) return fail(body.error, requestId);
    const parsed = parseOrError(NetworkPolicySchema, body.value, "network policy");
    if (!parsed.ok) return fail(parsed.error, requestId);
    const r = await sandboxes.setNetwork(c.get("claims").tenant, id, requestId, parsed.value);
    return r.ok ? c.json(r.value) : fail(r.error, requestId);
  });

  app.post("/v1/sandboxes/:id/exec", async (c) => {
    const id = c.req.param("id");
    const requestId = c.get("requestId");
    if (!ownId(id)) return fail(missing(id), requestId);
    const body = json(c.get("body"));
    if (!body.ok) return fail(body.error, requestId);
    const parsed = parseOrError(ExecRequestSchema, body.value, "exec request");
    if (!parsed.ok) return fail(parsed.error, requestId);
    if (parsed.value.network !== undefined)
      return fail(new AppError("invalid_request", SANDBOX_EXEC_NETWORK_REFUSAL), requestId);
    const req: ExecRequest = parsed.value;
    const signal = c.req.raw.signal;
    const base = { tenant: c.get("claims").tenant, requestId, signal };
    return answerExec(
      { accept: c.req.header("accept"), signal, requestId, region: deps.region, spans: c.get("spans") },
      (onEvent) => runSandboxExec(deps, id, req, onEvent ? { ...base, onEvent } : base),
    );
  });

  const filePath = (pathname: string): string => {
    const at = pathname.indexOf("/files");
    const rest = pathname.slice(at + "/files".length).replace(/^\//, "");
    try {
      return decodeURIComponent(rest) || ".";
    } catch {
      return "\0";
    }
  };

  const files = async (c: import("hono").Context<{ Variables: SandboxVars }>) => {
    const id = c.req.param("id") ?? "";
    const requestId = c.get("requestId");
    if (!ownId(id)) return fail(missing(id), requestId);
    const url = new URL(c.req.url);
    const path = filePath(url.pathname);
    const tenant = c.get("claims").tenant;
    const signal = c.req.raw.signal;
    const method = c.req.method;
    const what = `${method === "PUT" ? "write" : method === "DELETE" ? "delete" : "read"} ${path}`;
    return withSandbox(deps, id, { tenant, requestId, signal, what }, async (sb) => {
      if (method === "PUT") {
        const w = await sb.writeFile(path, c.get("bodyStream") ?? c.get("body"), {
          maxBytes: deps.maxFileBytes,
        });
        if (w.ok) deps.onFileBytes?.("in", w.value.size);
        return w.ok ? { ok: true as const, value: c.json(w.value) } : w;
      }
      if (method === "DELETE") {
        const d = await sb.removeFile(path);
        return d.ok ? { ok: true as const, value: c.body(null, 204) } : d;
      }
      // A listing's page: `recursive`, `limit`, `after` (a path must then be a directory).
      const q = url.searchParams;
      if (q.has("recursive") || q.has("limit") || q.has("after")) {
        const limit = Number(q.get("limit") ?? SANDBOX_LIMITS.maxListEntries);
        const after = q.get("after");
        const l = await sb.listFiles(path, {
          recursive: q.get("recursive") === "1",
          limit: Number.isInteger(limit) && limit > 0 ? limit : SANDBOX_LIMITS.maxListEntries,
          ...(after !== null ? { after } : {}),
        });
        return l.ok ? { ok: true as const, value: c.json(l.value) } : l;
      }
      const r = await sb.readFile(path);
      if (!r.ok) return r;
      if (r.value.kind === "dir") {
        const { kind: _k, ...page } = r.value;
        return { ok: true as const, value: c.json(page) };
      }
      deps.onFileBytes?.("out", r.value.size);
      return {
        ok: true as const,
        value: new Response(r.value.body, {
          status: 200,
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(r.value.size),
            // Survives the tunnel and the Durable Object, which re-frame the body; the edge
            // turns it back into Content-Length.
            [SANDBOX_FILE_SIZE_HEADER]: String(r.value.size),
            "x-request-id": requestId,
          },
        }),
      };
    }).then((r) => (r.ok ? r.value : fail(r.error, requestId)));
  };
  app.on(["GET", "PUT", "DELETE"], "/v1/sandboxes/:id/files", files);
  app.on(["GET", "PUT", "DELETE"], "/v1/sandboxes/:id/files/*", files);
  processRoutes(app, deps, { ownId, json });
  portLinkRoutes(
    app,
    { ...deps, links: new PortLinks({ sandboxes, execServerPort: deps.execServerPort, bus: deps.bus }) },
    { ownId, json },
  );
  return app;
}
