import type { Context } from "hono";
import type { z } from "zod";
import type { Spans } from "../shared/spans.ts";
import type { Principal } from "./auth/tenant-jwt.ts";
import type { EdgeDeps } from "./deps.ts";
import type { Env } from "./env.ts";
import type { StreamedBody } from "./relay/protocol.ts";

export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    /** The caller's own X-Request-Id when it is well formed (ClientRequestIdSchema). */
    clientRequestId: string | undefined;
    deps: EdgeDeps;
    /** This request's timing spans (middleware/server-timing.ts). */
    spans: Spans;
    principal: Principal;
    /** The buffered request body (routes that take one), within MAX_BODY_BYTES. */
    body: Uint8Array;
    /** A file upload's body, counted as it streams (never buffered), within MAX_FILE_BYTES. */
    bodyStream: StreamedBody;
  };
};

export type AppContext = Context<AppEnv>;

/** One public route: registered explicitly by the app factory and described in /openapi.json. */
export interface RouteDef {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  /** `tenant`: JWT + quota; `none`: public (the tunnel authenticates agents itself). */
  auth: "tenant" | "none";
  /** The scope the route needs; a list means any one of them. */
  scope?: string | readonly string[];
  /** Take the request body under the size limit before the handler runs. */
  body?: boolean;
  /**
   * The body limit: MAX_BODY_BYTES, buffered (`body`), unless `file`: MAX_FILE_BYTES, streamed
   * (`bodyStream`, raw file uploads).
   */
  bodyLimit?: "request" | "file";
  /**
   * A WebSocket route: the tenant's JWT may also come as a `bearer.<jwt>` subprotocol (a browser
   * cannot set Authorization on a WebSocket); see middleware/auth.ts.
   */
  websocket?: boolean;
  doc: {
    summary: string;
    tags?: string[];
    request?: z.ZodType;
    response?: z.ZodType;
    /** The route can answer `text/event-stream` (Accept). */
    sse?: boolean;
    /** A WebSocket route: its subprotocol and the JSON text messages each way (binary ones are raw bytes). */
    websocket?: { subprotocol: string; client: z.ZodType; server: z.ZodType };
    parameters?: Array<{
      name: string;
      in: "path" | "query" | "header";
      required?: boolean;
      description: string;
    }>;
    responseContentType?: string;
    /** A raw (non-JSON) request body of this type. */
    requestContentType?: string;
    /** Success status when not 200. */
    successStatus?: "201" | "204";
  };
  handler: (c: AppContext) => Response | Promise<Response>;
}
