import { ExecResultSchema } from "../../shared/api.ts";
import { ErrorEnvelopeSchema, ok, type Result } from "../../shared/errors.ts";

/** Sends one request through the edge app itself (JWT, scope, tenant quota, request id, relay). */
export type Dispatch = (req: Request) => Promise<Response>;

/**
 * A failure of an inner route call, as the edge answered it. `code` is a string, not ErrorCode:
 * it is whatever stable code the route returned (the error table), passed on verbatim.
 */
export interface RouteFailure {
  code: string;
  message: string;
  requestId: string | undefined;
  status: number;
}

export type RouteResult<T> = Result<T, RouteFailure>;

/**
 * Calls the edge's public routes on behalf of one MCP request: the caller's own bearer token and
 * client address go with every call, so each tool call is authorized, counted and logged exactly
 * like the same call made directly.
 */
export class RouteClient {
  constructor(
    private readonly dispatch: Dispatch,
    private readonly origin: string,
    private readonly forward: Record<string, string>,
  ) {}

  async request(
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    opts: { json?: unknown; bytes?: Uint8Array; signal: AbortSignal },
  ): Promise<RouteResult<Response>> {
    const headers = new Headers(this.forward);
    let body: BodyInit | undefined;
    if (opts.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(opts.json);
    } else if (opts.bytes !== undefined) {
      headers.set("Content-Type", "application/octet-stream");
      body = opts.bytes;
    }
    const res = await this.dispatch(
      new Request(`${this.origin}${path}`, { method, headers, body, signal: opts.signal }),
    );
    if (res.ok) return ok(res);
    return { ok: false, error: await failureOf(res) };
  }

  async json(
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    opts: { json?: unknown; bytes?: Uint8Array; signal: AbortSignal },
  ): Promise<RouteResult<{ body: unknown; requestId: string | undefined }>> {
    const res = await this.request(method, path, opts);
    if (!res.ok) return res;
    const requestId = res.value.headers.get("X-Request-Id") ?? undefined;
    if (res.value.status === 204) return ok({ body: undefined, requestId });
    return ok({ body: await res.value.json(), requestId });
  }

  async exec(
    path: string,
    call: { command: string; timeoutSeconds: number },
    signal: AbortSignal,
  ): Promise<
    RouteResult<{ outcome: ReturnType<typeof ExecResultSchema.parse>; requestId: string | undefined }>
  > {
    const got = await this.json("POST", path, { json: call, signal });
    if (!got.ok) return got;
    const parsed = ExecResultSchema.safeParse(got.value.body);
    if (!parsed.success) {
      return {
        ok: false,
        error: {
          code: "internal",
          message: "exec answered an unexpected body",
          requestId: got.value.requestId,
          status: 500,
        },
      };
    }
    return ok({ outcome: parsed.data, requestId: got.value.requestId });
  }
}

async function failureOf(res: Response): Promise<RouteFailure> {
  const requestId = res.headers.get("X-Request-Id") ?? undefined;
  const text = await res.text().catch(() => "");
  try {
    const env = ErrorEnvelopeSchema.shape.error.safeParse(JSON.parse(text).error);
    if (env.success)
      return {
        code: env.data.code,
        message: env.data.message,
        requestId: env.data.requestId,
        status: res.status,
      };
    const loose = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof loose.error?.code === "string") {
      return {
        code: loose.error.code,
        message: String(loose.error.message ?? ""),
        requestId,
        status: res.status,
      };
    }
  } catch {
    // not JSON: fall through
  }
  return {
    code: res.status >= 500 ? "internal" : "invalid_request",
    message: `HTTP ${res.status}`,
    requestId,
    status: res.status,
  };
}
