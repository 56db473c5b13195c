import type { Context } from "hono";
import type { z } from "zod";
import type { Principal } from "./auth/tenant-jwt.ts";
import type { EdgeDeps } from "./deps.ts";
import type { Env } from "./env.ts";

export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    deps: EdgeDeps;
    principal: Principal;
    /** The buffered request body (routes that take one), within MAX_BODY_BYTES. */
    body: Uint8Array;
  };
};

export type AppContext = Context<AppEnv>;

/** One public route: registered explicitly by the app factory and described in /openapi.json. */
export interface RouteDef {
  method: "GET" | "POST" | "DELETE";
  path: string;
  /** `tenant`: JWT + quota; `none`: public (the tunnel authenticates agents itself). */
  auth: "tenant" | "none";
  scope?: string;
  /** Buffer the request body under the size limit before the handler runs. */
  body?: boolean;
  doc: {
    summary: string;
    tags?: string[];
    request?: z.ZodType;
    response?: z.ZodType;
    /** The route can answer `text/event-stream` (Accept). */
    sse?: boolean;
    parameters?: Array<{
      name: string;
      in: "path" | "query" | "header";
      required?: boolean;
      description: string;
    }>;
    responseContentType?: string;
  };
  handler: (c: AppContext) => Response | Promise<Response>;
}
