import { z } from "zod";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import type { RouteDef } from "../app-env.ts";

type Json = Record<string, unknown>;

const schemaOf = (s: z.ZodType, io: "input" | "output"): Json =>
  z.toJSONSchema(s, { io, unrepresentable: "any", target: "draft-2020-12" }) as Json;

const ERRORS: Record<string, string> = {
  "400": "invalid input",
  "401": "missing or invalid token",
  "403": "missing scope",
  "404": "not found (sandbox_not_found, file_not_found, not_found)",
  "410":
    "sandbox_evicted: the sandbox's pod was evicted, OOM-killed or failed (the kubelet's reason in the message)",
  "409": "conflict (sandbox_name_conflict, not_a_tty, process_exited, …)",
  "413": "body too large",
  "426": "websocket_required: send a WebSocket upgrade",
  "429": "rate limited (Retry-After)",
  "502": "agent or tunnel failure",
  "503": "no agent in any region (or of the sandbox's cluster), or queue wait exceeded (Retry-After)",
  "504": "command or relay timeout",
};

/** OpenAPI 3.1 for the routes the app registers, schemas generated from the shared zod contract. */
export function openApiDocument(routes: readonly RouteDef[]): Json {
  const paths: Record<string, Json> = {};
  for (const r of routes) {
    const path = r.path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");
    const op: Json = {
      summary: r.doc.summary,
      tags: r.doc.tags ?? [],
      operationId: `${r.method.toLowerCase()}${path}`,
    };
    if (r.doc.parameters) op.parameters = r.doc.parameters.map((p) => ({ ...p, schema: { type: "string" } }));
    if (r.doc.requestContentType) {
      op.requestBody = {
        required: true,
        content: { [r.doc.requestContentType]: { schema: { type: "string", format: "binary" } } },
      };
    }
    if (r.doc.request) {
      op.requestBody = {
        required: true,
        content: { "application/json": { schema: schemaOf(r.doc.request, "input") } },
      };
    }
    const ok: Json = {};
    if (r.doc.response) ok["application/json"] = { schema: schemaOf(r.doc.response, "output") };
    if (r.doc.sse || r.doc.responseContentType === "text/event-stream") {
      ok["text/event-stream"] = { schema: { type: "string", description: "server-sent events" } };
    } else if (r.doc.responseContentType) {
      ok[r.doc.responseContentType] = { schema: { type: "string" } };
    }
    const success = r.doc.successStatus ?? "200";
    const ws = r.doc.websocket;
    const responses: Json = ws
      ? { "101": { description: `Switching Protocols: the WebSocket (subprotocol ${ws.subprotocol})` } }
      : success === "204"
        ? { "204": { description: "done, no body" } }
        : { [success]: { description: "success", content: ok } };
    if (ws) {
      op["x-websocket"] = {
        subprotocol: ws.subprotocol,
        binaryMessages: "raw bytes, both ways",
        clientTextMessage: schemaOf(ws.client, "input"),
        serverTextMessage: schemaOf(ws.server, "output"),
      };
    }
    if (success === "201")
      responses["200"] = { description: "an existing one (get-or-create by name)", content: ok };
    const errorContent = { "application/json": { schema: { $ref: "#/components/schemas/ErrorEnvelope" } } };
    const wsOnly = ["409", "426"];
    const codes =
      r.auth === "tenant"
        ? Object.keys(ERRORS).filter((c) => ws !== undefined || !wsOnly.includes(c))
        : ["400", "429"];
    for (const code of codes) responses[code] = { description: ERRORS[code], content: errorContent };
    op.responses = responses;
    if (r.auth === "tenant") {
      op.security = [{ bearer: [] }];
      if (r.scope) op["x-required-scope"] = r.scope;
    }
    paths[path] = { ...(paths[path] ?? {}), [r.method.toLowerCase()]: op };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "pi-sandbox-runtime edge API",
      version: "1",
      description:
        "Secure AI tool execution in Kubernetes sandboxes. Every response carries X-Request-Id; errors use the ErrorEnvelope.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
      schemas: { ErrorEnvelope: schemaOf(ErrorEnvelopeSchema, "output") },
    },
    paths,
  };
}

/** GET /openapi.json — built lazily from the routes the app was created with. */
export function openApiRoute(routes: () => readonly RouteDef[]): RouteDef {
  let doc: Json | null = null;
  return {
    method: "GET",
    path: "/openapi.json",
    auth: "none",
    doc: { summary: "This API description", tags: ["meta"] },
    handler: (c) => {
      doc = doc ?? openApiDocument(routes());
      return c.json(doc);
    },
  };
}
