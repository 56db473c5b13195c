import { PORT_REQUEST_HEADERS_HEADER } from "../../shared/api.ts";
import type { AppContext } from "../app-env.ts";
import type { StreamedBody } from "./protocol.ts";
import { chooseRegions, REGION_HEADER } from "./regions.ts";
import { type RelayOutcome, relayToRegions } from "./relay.ts";

/** Regions to try for this request, in order (claim, header, nearest; then the others). */
export function regionOrder(c: AppContext): string[] {
  const end = c.get("spans").start("edge-region");
  try {
    return pickRegions(c);
  } finally {
    end();
  }
}

function pickRegions(c: AppContext): string[] {
  const cf = (c.req.raw as Request & { cf?: { continent?: unknown } }).cf;
  const choice = chooseRegions({
    regions: c.get("deps").config.regions,
    claim: c.get("principal").region,
    header: c.req.header(REGION_HEADER),
    continent: typeof cf?.continent === "string" ? cf.continent : undefined,
  });
  if (!choice.ok) throw choice.error;
  return choice.value.order;
}

/** What a route decides about one relay; everything else comes from the request's context. */
export interface RelaySpec {
  /** GET, POST, PUT, DELETE; any method for a port link's request. */
  method: string;
  /** Path with query, as the agent will see it. */
  path: string;
  /** The body to sign and send: a validated, re-encoded JSON body, or a file upload's stream. */
  body?: Uint8Array | StreamedBody | null;
  /** `application/json` unless told (`text/event-stream` for a stream, `*\/*` for a file read). */
  accept?: string;
  /** `application/json` unless told (`application/octet-stream` for a file write). */
  contentType?: string;
  /** Regions to try in order; `regionOrder(c)` unless told (a sandbox's own region, one region of a fan-out). */
  regions?: readonly string[];
  /** Only an agent of this cluster may serve it (a sandbox's requests). */
  cluster?: string;
  /** Send to this one agent connection (a fan-out to every agent). */
  connection?: string;
  /** Wait for the answer's head this long; the configured relay timeout unless told. */
  timeoutMs?: number;
  /** Max silence between body chunks once streaming; 0 = none (event streams). */
  idleMs?: number;
  /** A port link's request: the client's own headers for the sandbox's app (PORT_REQUEST_HEADERS_HEADER). */
  portRequestHeaders?: Array<[string, string]>;
  /** The client's WebSocket upgrade: a 101 carrying the socket if the agent accepts it. */
  websocket?: boolean;
}

/**
 * The one way a route relays to an agent. The caller's principal and request id (signed), the
 * headers an agent may see (content type, accept, the caller's own request id for cancelling),
 * the request's spans and the client's abort signal are filled in here, so no route can forget
 * one: a client that leaves cancels the agent's work on every route.
 */
export function relayFrom(c: AppContext, spec: RelaySpec): Promise<RelayOutcome> {
  const { config, tunnels } = c.get("deps");
  const headers: Record<string, string> = {
    "content-type": spec.contentType ?? "application/json",
    accept: spec.accept ?? "application/json",
  };
  const clientId = c.get("clientRequestId");
  if (clientId) headers["x-client-request-id"] = clientId;
  if (spec.portRequestHeaders) headers[PORT_REQUEST_HEADERS_HEADER] = JSON.stringify(spec.portRequestHeaders);
  return relayToRegions(config, tunnels, {
    method: spec.method,
    path: spec.path,
    body: spec.body ?? null,
    headers,
    principal: c.get("principal"),
    requestId: c.get("requestId"),
    regions: spec.regions ?? regionOrder(c),
    timeoutMs: spec.timeoutMs ?? config.relayTimeoutMs,
    ...(spec.idleMs !== undefined ? { idleMs: spec.idleMs } : {}),
    ...(spec.cluster !== undefined ? { cluster: spec.cluster } : {}),
    ...(spec.connection !== undefined ? { connection: spec.connection } : {}),
    ...(spec.websocket ? { websocket: true } : {}),
    // workerd aborts the request's signal when the client leaves; the relay carries it into the
    // TunnelDO request, whose abort sends the agent a cancel frame.
    signal: c.req.raw.signal,
    spans: c.get("spans"),
  });
}
