import type { SandboxApiError } from "./errors.ts";

/** Exit codes of the CLI's own failures (sysexits.h); `exec` otherwise exits with the command's code. */
export const EXIT = {
  ok: 0,
  /** A command that ran past its timeout was killed (as timeout(1) does). */
  commandTimedOut: 124,
  usage: 64,
  invalidRequest: 65,
  notFound: 66,
  software: 70,
  unavailable: 69,
  tryAgain: 75,
  noPermission: 77,
  config: 78,
} as const;

/** What to do about each code, for a person at a terminal; the server's message follows it. */
const HINTS: Record<string, string> = {
  invalid_request: "the request was refused as invalid",
  invalid_json: "the request body was not JSON",
  unauthenticated: "no token was sent: pass --token or set PI_SANDBOX_TOKEN",
  invalid_token: "the token was refused (wrong issuer, audience, key or algorithm)",
  token_expired: "the token has expired: get a fresh one (npm start prints new dev tokens)",
  missing_tenant: "the token names no tenant",
  insufficient_scope: "the token lacks the scope this command needs (pool needs sandbox:admin)",
  not_found: "no such route on this server (is the URL right, and is the server current?)",
  method_not_allowed: "the server does not allow this method here",
  payload_too_large: "the request or file is larger than the server accepts",
  unsupported_media_type: "the server refused the content type",
  rate_limited: "the tenant's request quota is used up",
  internal: "the server failed",
  agent_unavailable: "the cluster agent did not answer",
  tunnel_closed: "the tunnel to the cluster dropped during the request",
  sandbox_failed: "the sandbox pod failed",
  model_unavailable: "the chat model failed or refused",
  no_agent: "no cluster agent is connected for the region",
  queue_timeout: "no sandbox pod became free in time",
  tunnel_busy: "the region's tunnel is busy with other uploads; try again",
  lease_lost: "the pod's lease was lost while the command ran (it was stopped)",
  shutting_down: "the agent is shutting down",
  model_not_configured: "the cluster has no chat model configured",
  relay_timeout: "the cluster did not answer in time",
  request_cancelled: "cancelled",
  sandbox_not_found: "no such sandbox (deleted, expired, or not yours)",
  sandbox_expired: "the sandbox expired",
  sandbox_evicted:
    "the sandbox's pod was evicted, OOM-killed or failed (the message says why): create a new one",
  tenant_lease_limit: "the tenant holds as many pods as TENANT_MAX_LEASES allows: retry later",
  sandbox_limit: "the tenant has as many sandboxes as it may: delete one first",
  sandbox_cluster_unavailable: "no agent of the cluster that holds this sandbox is connected",
  file_not_found: "no such file in the sandbox",
  invalid_path: "the path leads outside /workspace",
  client_timeout: "no answer in time (--timeout raises the limit)",
  network_error: "cannot reach the server",
  invalid_response: "the server's answer was not what this client understands",
  not_a_directory: "that path is a file, not a directory",
  is_a_directory: "that path is a directory: use `pi-sandbox ls`",
  process_not_found: "no such process in that sandbox (`pi-sandbox ps ID` lists them)",
  process_exited: "the process has already exited",
  sandbox_name_conflict:
    "a sandbox of that name exists with another network or secrets (change it, or use another name)",
  not_a_tty:
    "it was started without a terminal (start --tty), so attach cannot type into it: logs -f follows it",
  process_limit: "the sandbox runs as many processes as it may: stop one first",
  not_supported_in_api_mode: "this cluster runs commands over pods/exec, which keeps no processes",
};

export function describeError(e: SandboxApiError): string {
  const hint = HINTS[e.code] ?? "the request failed";
  const retry = e.retryAfterSeconds !== undefined ? ` (retry after ${e.retryAfterSeconds} s)` : "";
  const details = (e.details ?? []).map((d) => `\n  ${d.path}: ${d.message}`).join("");
  const rid = e.requestId ? ` [request ${e.requestId}]` : "";
  return `pi-sandbox: ${e.code}: ${hint}${retry}: ${e.message}${details}${rid}`;
}

export function exitCodeOf(e: SandboxApiError): number {
  if (e.status === 401 || e.status === 403) return EXIT.noPermission;
  if (e.status === 404 || e.code.endsWith("_not_found")) return EXIT.notFound;
  if (e.status === 429 || e.code === "queue_timeout" || e.code === "tunnel_busy") return EXIT.tryAgain;
  if (e.status === 400 || e.status === 405 || e.status === 413 || e.status === 415)
    return EXIT.invalidRequest;
  if (e.status >= 500 || e.code === "network_error" || e.code === "client_timeout") return EXIT.unavailable;
  return EXIT.software;
}
