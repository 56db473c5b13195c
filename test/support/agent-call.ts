import { SCOPES } from "../../shared/api.ts";
import { RELAY_HEADER, type RelaySigner } from "../../shared/relay-signing.ts";

/** What a test says about one call straight to an agent; everything else is the edge's usual. */
export interface AgentCall {
  method: string;
  /** Path with query, as signed. */
  path: string;
  /** A string is sent as is (bad JSON on purpose); anything else as JSON. */
  body?: unknown;
  tenant?: string;
  subject?: string;
  scopes?: string[];
  /** A fresh one per call unless told (the agent refuses a replayed token). */
  requestId?: string;
  accept?: string;
  /** 30 s unless told: no call waits forever. */
  signal?: AbortSignal;
  /** Send this body instead of the signed one (a tampered request). */
  tamperBody?: string;
  /** Send no signature at all. */
  noSignature?: boolean;
}

let seq = 0;

/**
 * The one way a test calls an agent as the edge would: the request signed by `signer` for exactly
 * its method, path and body (shared/relay-signing.ts), sent to `agentUrl`.
 */
export async function signedAgentCall(
  signer: RelaySigner,
  agentUrl: string,
  call: AgentCall,
): Promise<Response> {
  const text =
    call.body === undefined
      ? undefined
      : typeof call.body === "string"
        ? call.body
        : JSON.stringify(call.body);
  const token = await signer.sign({
    method: call.method,
    path: call.path,
    body: text,
    tenant: call.tenant ?? "tenant-a",
    subject: call.subject ?? "user-1",
    scopes: call.scopes ?? [SCOPES.exec, SCOPES.chat, SCOPES.admin],
    requestId: call.requestId ?? `test-${process.pid}-${++seq}-${Date.now()}`,
  });
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (!call.noSignature) headers[RELAY_HEADER] = token;
  if (call.accept) headers.accept = call.accept;
  return fetch(`${agentUrl}${call.path}`, {
    method: call.method,
    headers,
    ...(text !== undefined ? { body: call.tamperBody ?? text } : {}),
    signal: call.signal ?? AbortSignal.timeout(30_000),
  });
}
