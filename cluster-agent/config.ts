import { randomBytes } from "node:crypto";
import type { JSONWebKeySet, JWK } from "jose";
import { z } from "zod";
import { SANDBOX_LIMITS } from "../shared/api.ts";
import { AppError, err, ok, type Result, zodDetails } from "../shared/errors.ts";
import { type ChatOptionsInput, readChatOptions } from "./chat/chat-options.ts";
import { type ModelConfig, readModelConfig } from "./chat/model-config.ts";

/** Environment variables arrive as strings; "" means "not set" so that `FOO=` falls back to the default. */
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v.trim()));
const intVar = (def: number, min: number, max: number) =>
  z.preprocess((v) => (v === undefined || v === "" ? def : Number(v)), z.number().int().min(min).max(max));

const EnvConfigSchema = z.object({
  KUBECONFIG: optionalString,
  SANDBOX_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label")
    .max(63)
    .default("pi-sandbox"),
  POOL_SIZE: intVar(8, 0, 10_000),
  /** Every sandbox pod (free, held, starting) counts; the kustomize ResourceQuota agrees with it. */
  POOL_MAX_PODS: intVar(64, 0, 10_000),
  POOL_MAX_CREATE_PER_SECOND: intVar(32, 1, 1_000),
  POOL_SCALE_DOWN_AFTER_SECONDS: intVar(60, 0, 86_400),
  LEASE_TTL_SECONDS: intVar(45, 1, 3600),
  /** Lease duration of the pool-leader election (client-go's default is 15 s). */
  LEADER_LEASE_SECONDS: intVar(15, 1, 3600),
  QUEUE_TIMEOUT_SECONDS: intVar(15, 0, 3600),
  RECYCLE: z.enum(["replace", "scrub"]).default("replace"),
  /** Optional hard cap per tenant; 0 (the default) is no cap: fair dispatch shares the pool. */
  TENANT_MAX_LEASES: intVar(0, 0, 100_000),
  /**
   * A tenant holds at most max(POOL_SIZE, this % of POOL_MAX_PODS) pods: the rest stays for other
   * tenants, since a pod held by a long command cannot be taken back. 100 = no share rule.
   */
  TENANT_POOL_SHARE_PERCENT: intVar(75, 1, 100),
  SANDBOX_IMAGE: z.string().min(1).default("pi-sandbox-runtime/sandbox:dev"),
  SANDBOX_POD_TEMPLATE: optionalString,
  SANDBOX_RUNTIME_CLASS: optionalString,
  AGENT_ID: optionalString,
  POD_NAME: optionalString,
  REGION: z.string().min(1).default("local"),
  EXEC_MODE: z.enum(["http", "api"]).default("http"),
  POOL_TOKEN: optionalString,
  AGENT_PORT: intVar(8081, 0, 65535),
  POD_READY_TIMEOUT_SECONDS: intVar(60, 1, 3600),
  /** 127.0.0.1 locally; 0.0.0.0 in a pod (probes and metrics scrapes come from outside). */
  AGENT_HOST: z.string().min(1).default("127.0.0.1"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /** The region's relay public keys (JWKS JSON): the edge signs every relayed request with the private halves. */
  RELAY_PUBLIC_KEYS: optionalString,
  /** Where the tunnel dials out to (http(s) or ws(s)); unset = no tunnel (direct relays only). */
  EDGE_URL: optionalString,
  /** The region's agent private key (Ed25519 JWK JSON) the tunnel logs in with. */
  AGENT_KEY: optionalString,
  /** Which cluster of the region this agent serves: sandbox ids name it, the edge routes by it. */
  CLUSTER_ID: z
    .string()
    .regex(/^[a-z0-9-]{1,32}$/, "must be 1-32 of [a-z0-9-]")
    .default("default"),
  /** Live sandboxes (POST /v1/sandboxes) per tenant in this cluster. */
  TENANT_MAX_SANDBOXES: intVar(8, 0, 100_000),
  /** Largest file one PUT /v1/sandboxes/:id/files/... may write. */
  MAX_FILE_BYTES: intVar(SANDBOX_LIMITS.defaultMaxFileBytes, 0, SANDBOX_LIMITS.defaultMaxFileBytes),
});

const jsonOf = <T>(
  text: string | undefined,
  name: string,
  check: (v: unknown) => v is T,
): Result<T | undefined> => {
  if (text === undefined) return ok(undefined);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return err(new AppError("invalid_request", `invalid agent configuration: ${name} is not valid JSON`));
  }
  return check(v)
    ? ok(v)
    : err(new AppError("invalid_request", `invalid agent configuration: ${name} has the wrong shape`));
};
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isJwks = (v: unknown): v is JSONWebKeySet => isObject(v) && Array.isArray(v.keys) && v.keys.length > 0;
const isPrivateJwk = (v: unknown): v is JWK =>
  isObject(v) && typeof v.kty === "string" && typeof v.d === "string";

export interface AgentConfig {
  kubeconfig: string | undefined;
  namespace: string;
  poolSize: number;
  poolMaxPods: number;
  poolMaxCreatePerSecond: number;
  poolScaleDownAfterSeconds: number;
  leaseTtlSeconds: number;
  leaderLeaseSeconds: number;
  queueTimeoutSeconds: number;
  recycle: "replace" | "scrub";
  /** 0 = no per-tenant cap. */
  tenantMaxLeases: number;
  /** A tenant's share of the pool in leases (0 = no share rule); see TENANT_POOL_SHARE_PERCENT. */
  tenantShareLeases: number;
  sandboxImage: string;
  podTemplatePath: string | undefined;
  runtimeClassName: string | undefined;
  agentId: string;
  region: string;
  execMode: "http" | "api";
  poolToken: string | undefined;
  agentPort: number;
  podReadyTimeoutSeconds: number;
  agentHost: string;
  logLevel: string;
  /** Required: the agent serves only relays the edge signed. */
  relayPublicKeys: JSONWebKeySet;
  edgeUrl: string | undefined;
  agentKey: JWK | undefined;
  clusterId: string;
  tenantMaxSandboxes: number;
  maxFileBytes: number;
  /** The model, or why there is none (chat then answers model_not_configured, naming what to set). */
  model: Result<ModelConfig>;
  chat: ChatOptionsInput;
}

/** AGENT_ID wins, then the pod name (Downward API), then a random id unique per process. */
function agentIdFrom(agentId: string | undefined, podName: string | undefined): string {
  return agentId ?? podName ?? `agent-${randomBytes(4).toString("hex")}`;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Result<AgentConfig> {
  const parsed = EnvConfigSchema.safeParse(env);
  if (!parsed.success) {
    const details = zodDetails(parsed.error);
    const first = details[0];
    return err(
      new AppError(
        "invalid_request",
        `invalid agent configuration: ${first ? `${first.path}: ${first.message}` : "?"}`,
        {
          details,
        },
      ),
    );
  }
  const e = parsed.data;
  if (e.POOL_MAX_PODS < e.POOL_SIZE) {
    return err(
      new AppError(
        "invalid_request",
        `invalid agent configuration: POOL_MAX_PODS (${e.POOL_MAX_PODS}) must be at least POOL_SIZE (${e.POOL_SIZE}): the cap counts every sandbox pod, the warm free ones included`,
      ),
    );
  }
  const agentId = agentIdFrom(e.AGENT_ID, e.POD_NAME);
  // The holder identity is `${agentId}/${requestId}`: a slash in the agent id would make it ambiguous.
  if (agentId.includes("/")) {
    return err(new AppError("invalid_request", "invalid agent configuration: AGENT_ID must not contain '/'"));
  }
  const relayPublicKeys = jsonOf(e.RELAY_PUBLIC_KEYS, "RELAY_PUBLIC_KEYS", isJwks);
  if (!relayPublicKeys.ok) return relayPublicKeys;
  if (relayPublicKeys.value === undefined) {
    return err(
      new AppError(
        "invalid_request",
        "RELAY_PUBLIC_KEYS is required: the agent serves only relays the edge signed",
      ),
    );
  }
  // Each pod's exec token is derived from the pool token: without it nobody can call the exec server.
  if ((e.EXEC_MODE === "http" || e.RECYCLE === "scrub") && !e.POOL_TOKEN) {
    return err(
      new AppError("invalid_request", "POOL_TOKEN is required with EXEC_MODE=http or RECYCLE=scrub"),
    );
  }
  const agentKey = jsonOf(e.AGENT_KEY, "AGENT_KEY", isPrivateJwk);
  if (!agentKey.ok) return agentKey;
  if (e.EDGE_URL !== undefined && agentKey.value === undefined) {
    return err(
      new AppError("invalid_request", "invalid agent configuration: EDGE_URL needs AGENT_KEY to log in"),
    );
  }
  const chat = readChatOptions(env);
  if (!chat.ok) return chat;
  return ok({
    kubeconfig: e.KUBECONFIG,
    namespace: e.SANDBOX_NAMESPACE,
    poolSize: e.POOL_SIZE,
    poolMaxPods: e.POOL_MAX_PODS,
    poolMaxCreatePerSecond: e.POOL_MAX_CREATE_PER_SECOND,
    poolScaleDownAfterSeconds: e.POOL_SCALE_DOWN_AFTER_SECONDS,
    leaseTtlSeconds: e.LEASE_TTL_SECONDS,
    leaderLeaseSeconds: e.LEADER_LEASE_SECONDS,
    queueTimeoutSeconds: e.QUEUE_TIMEOUT_SECONDS,
    recycle: e.RECYCLE,
    tenantMaxLeases: e.TENANT_MAX_LEASES,
    tenantShareLeases: tenantShare(e.POOL_SIZE, e.POOL_MAX_PODS, e.TENANT_POOL_SHARE_PERCENT),
    sandboxImage: e.SANDBOX_IMAGE,
    podTemplatePath: e.SANDBOX_POD_TEMPLATE,
    runtimeClassName: e.SANDBOX_RUNTIME_CLASS,
    agentId,
    region: e.REGION,
    execMode: e.EXEC_MODE,
    poolToken: e.POOL_TOKEN,
    agentPort: e.AGENT_PORT,
    podReadyTimeoutSeconds: e.POD_READY_TIMEOUT_SECONDS,
    agentHost: e.AGENT_HOST,
    logLevel: e.LOG_LEVEL,
    relayPublicKeys: relayPublicKeys.value,
    edgeUrl: e.EDGE_URL,
    agentKey: agentKey.value,
    clusterId: e.CLUSTER_ID,
    tenantMaxSandboxes: e.TENANT_MAX_SANDBOXES,
    maxFileBytes: e.MAX_FILE_BYTES,
    model: readModelConfig(env),
    chat: chat.value,
  });
}

/**
 * A tenant's share of the pool in leases: max(POOL_SIZE, pct % of POOL_MAX_PODS), or 0 (no rule) at
 * 100 % or when the share is the whole pool anyway (POOL_SIZE = POOL_MAX_PODS) — then a caller who
 * waits is waiting for the pool, and is told queue_timeout, not that its tenant held too much.
 */
export function tenantShare(poolSize: number, maxPods: number, percent: number): number {
  if (percent >= 100) return 0;
  const share = Math.max(poolSize, Math.ceil((maxPods * percent) / 100));
  return share >= maxPods ? 0 : share;
}
