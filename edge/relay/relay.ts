import { PORT_REQUEST_HEADERS_HEADER } from "../../shared/api.ts";
import { AppError, errorResponse } from "../../shared/errors.ts";
import {
  createRelaySigner,
  RELAY_HEADER,
  type RelaySigner,
  relayAudience,
  STREAMED_BODY,
} from "../../shared/relay-signing.ts";
import { AGENT_TIMING_HEADER, parseServerTiming, type Spans } from "../../shared/spans.ts";
import type { Principal } from "../auth/tenant-jwt.ts";
import type { EdgeConfig } from "../config.ts";
import {
  cancelKey,
  type StreamedBody,
  TUNNEL_AGENTS_PATH,
  TUNNEL_CANCEL_PATH,
  TUNNEL_HEADERS,
  TUNNEL_ORIGIN,
} from "./protocol.ts";

const isStreamed = (body: RelayInput["body"]): body is StreamedBody =>
  body !== null && !(body instanceof Uint8Array);

/** How the Worker reaches the TunnelDO of a region (a DO stub's fetch in production). */
export interface TunnelDirectory {
  fetch(region: string, request: Request): Promise<Response>;
}

export interface RelayInput {
  method: string;
  /** Path with query, as the agent will see it. */
  path: string;
  /**
   * Bytes are signed in the relay token; a stream (a file upload) is signed in a trailer the
   * TunnelDO sends once the body has passed, and goes to the first region only (it cannot be re-sent).
   */
  body: Uint8Array | StreamedBody | null;
  headers?: HeadersInit;
  principal: Principal;
  requestId: string;
  /** Regions to try in order (see chooseRegions). */
  regions: readonly string[];
  timeoutMs: number;
  /** Max silence between body chunks once streaming; 0 = none (event streams). */
  idleMs?: number;
  /** Send to this one agent connection (TunnelDO `connId`) instead of letting the DO pick. */
  connection?: string;
  /** Only an agent of this cluster may serve it (a sandbox's requests). */
  cluster?: string;
  /**
   * The client's request signal (enable_request_signal): workerd aborts it when the client leaves
   * but does not cancel the Worker's subrequests, so it travels into the TunnelDO request, whose
   * abort sends the agent a cancel frame.
   */
  signal?: AbortSignal;
  /** The request's spans: signing and the tunnel round trip are timed, the agent's spans merged. */
  spans?: Spans;
  /** A client's WebSocket upgrade (a terminal): the DO answers 101 with the socket if the agent accepts. */
  websocket?: boolean;
}

export interface RelayOutcome {
  response: Response;
  /** The region that answered (or the last one tried). */
  region: string;
}

const signers = new Map<string, Promise<RelaySigner>>();

/** The region's relay signer (one per key), shared by the Worker (heads) and the TunnelDO (trailers). */
export function signerFor(config: EdgeConfig, region: string): Promise<RelaySigner> {
  const jwk = config.relayPrivateKeys[region];
  if (!jwk) return Promise.reject(new AppError("internal", `no relay key for region ${region}`));
  const key = `${region}:${jwk.kid ?? ""}:${jwk.x ?? ""}`;
  let s = signers.get(key);
  if (!s) {
    s = createRelaySigner({ privateJwk: jwk, audience: relayAudience(region) });
    signers.set(key, s);
  }
  return s;
}

/**
 * Forwarded to agents; everything else (Authorization, cookies, cf headers) stays at the edge. A
 * port link's app headers travel inside PORT_REQUEST_HEADERS_HEADER, chosen by the link route.
 */
const FORWARD = [
  "content-type",
  "accept",
  "x-client-request-id",
  "last-event-id",
  PORT_REQUEST_HEADERS_HEADER,
];

/**
 * Sign the request for each candidate region (the audience is per region) and hand it to that
 * region's TunnelDO; a region without a connected agent fails over to the next.
 */
export async function relayToRegions(
  config: EdgeConfig,
  tunnels: TunnelDirectory,
  input: RelayInput,
): Promise<RelayOutcome> {
  let last: RelayOutcome | null = null;
  const streamed = isStreamed(input.body);
  for (const region of streamed ? input.regions.slice(0, 1) : input.regions) {
    const endSign = input.spans?.start("edge-sign");
    const signer = await signerFor(config, region);
    const token = await signer.sign({
      method: input.method,
      path: input.path,
      body: isStreamed(input.body) ? STREAMED_BODY : input.body,
      tenant: input.principal.tenant,
      subject: input.principal.subject,
      scopes: input.principal.scopes,
      requestId: input.requestId,
    });
    endSign?.();
    const src = new Headers(input.headers);
    const headers = new Headers();
    for (const name of FORWARD) {
      const v = src.get(name);
      if (v !== null) headers.set(name, v);
    }
    headers.set("X-Request-Id", input.requestId);
    headers.set(RELAY_HEADER, token);
    headers.set(TUNNEL_HEADERS.region, region);
    headers.set(TUNNEL_HEADERS.timeoutMs, String(input.timeoutMs));
    headers.set(TUNNEL_HEADERS.idleMs, String(input.idleMs ?? input.timeoutMs));
    if (input.connection !== undefined) headers.set(TUNNEL_HEADERS.pinConnection, input.connection);
    if (input.cluster !== undefined) headers.set(TUNNEL_HEADERS.cluster, input.cluster);
    if (input.websocket) {
      headers.set("Upgrade", "websocket");
      headers.set(TUNNEL_HEADERS.websocket, "1");
    }
    const clientId = headers.get("x-client-request-id");
    if (clientId !== null) headers.set(TUNNEL_HEADERS.cancelKey, cancelKey(input.principal.tenant, clientId));
    const body = isStreamed(input.body) ? input.body.stream : input.body;
    if (isStreamed(input.body)) {
      headers.set(TUNNEL_HEADERS.bodyTrailer, "1");
      headers.set(TUNNEL_HEADERS.bodyEndMark, input.body.endMark);
    }
    const hasBody = input.body !== null && input.method !== "GET" && input.method !== "HEAD";
    const req = new Request(`${TUNNEL_ORIGIN}${input.path}`, {
      method: input.method,
      headers,
      body: hasBody ? (body as Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>) : null,
      ...(input.signal ? { signal: input.signal } : {}),
    });
    const endTunnel = input.spans?.start("edge-tunnel");
    const response = await tunnels.fetch(region, req).catch((e: unknown) => {
      // The client left while its request waited (its signal aborted the DO request): that is a
      // cancelled request, answered and logged as one, not an internal error.
      if (input.signal?.aborted) throw new AppError("request_cancelled", "the client went away");
      throw e;
    });
    endTunnel?.();
    // The agent's own figures; a malformed header is dropped whole, never trusted in part.
    input.spans?.merge("agent-", parseServerTiming(response.headers.get(AGENT_TIMING_HEADER)));
    last = { response, region };
    if (response.headers.get(TUNNEL_HEADERS.noAgent) !== "1") return last;
    await response.body?.cancel();
  }
  return {
    response: errorResponse(
      new AppError("no_agent", "no agent connected in any region", { retryAfterSeconds: 5 }),
      input.requestId,
    ),
    region: last?.region ?? input.regions[0] ?? "",
  };
}

/**
 * Stop every in-flight request this tenant sent with this X-Request-Id, in whichever region it
 * went to (a request lives in exactly one TunnelDO, so each region is asked). Returns how many.
 */
export async function cancelInRegions(
  tunnels: TunnelDirectory,
  regions: readonly string[],
  tenant: string,
  clientRequestId: string,
): Promise<number> {
  const key = cancelKey(tenant, clientRequestId);
  const counts = await Promise.all(
    regions.map(async (region) => {
      const res = await tunnels.fetch(
        region,
        new Request(`${TUNNEL_ORIGIN}${TUNNEL_CANCEL_PATH}`, {
          method: "POST",
          headers: { [TUNNEL_HEADERS.cancelKey]: key },
        }),
      );
      const body: unknown = res.ok ? await res.json() : null;
      const n = (body as { cancelled?: unknown } | null)?.cancelled;
      return typeof n === "number" ? n : 0;
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** The agents connected to a region's TunnelDO now (empty if none, or if the DO cannot say). */
export async function connectedAgents(
  tunnels: TunnelDirectory,
  region: string,
): Promise<Array<{ connId: string; agentId: string; cluster?: string }>> {
  try {
    const res = await tunnels.fetch(region, new Request(`${TUNNEL_ORIGIN}${TUNNEL_AGENTS_PATH}`));
    if (!res.ok) return [];
    const list: unknown = await res.json();
    if (!Array.isArray(list)) return [];
    return list.filter(
      (a): a is { connId: string; agentId: string; cluster?: string } =>
        typeof a === "object" && a !== null && typeof a.connId === "string" && typeof a.agentId === "string",
    );
  } catch {
    return [];
  }
}

/** TunnelDOs by region name. */
export function durableTunnels(ns: DurableObjectNamespace): TunnelDirectory {
  return { fetch: (region, request) => ns.get(ns.idFromName(region)).fetch(request) };
}
