import { randomBytes } from "node:crypto";
import type { JSONWebKeySet, JWK } from "jose";
import { z } from "zod";
import { ClusterIdSchema, SANDBOX_LIMITS } from "../shared/api.ts";
import { AppError, err, ok, type Result, zodDetails } from "../shared/errors.ts";
import { type ChatOptionsInput, readChatOptions } from "./chat/chat-options.ts";
import { type ModelConfig, readModelConfig } from "./chat/model-config.ts";
import { DEFAULT_FORBIDDEN, forbiddenRanges } from "./egress/addresses.ts";

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
  /** See RecycleMode (leases/types.ts); the default and why are in README.md. */
  RECYCLE: z.enum(["replace", "scrub", "reuse-same-tenant"]).default("replace"),
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
  /**
   * How commands reach a sandbox pod: `http` (default) our exec server in the image; `api` the
   * API server's pods/exec (any image with /bin/sh); `pydantic-http` an exec server the user chose,
   * written to pydantic-ai-backends' http contract (README "Exec modes").
   */
  EXEC_MODE: z.enum(["http", "api", "pydantic-http"]).default("http"),
  POOL_TOKEN: optionalString,
  AGENT_PORT: intVar(8081, 0, 65535),
  /** Prometheus metrics, on AGENT_HOST but never on AGENT_PORT (0 = any free port, for tests). */
  METRICS_PORT: intVar(9464, 0, 65535),
  POD_READY_TIMEOUT_SECONDS: intVar(60, 1, 3600),
  /** 127.0.0.1 locally; 0.0.0.0 in a pod (probes and metrics scrapes come from outside). */
  AGENT_HOST: z.string().min(1).default("127.0.0.1"),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /** The region's relay public keys (JWKS JSON): the edge signs every relayed request with the private halves. */
  RELAY_PUBLIC_KEYS: optionalString,
  /** Where the tunnel dials out to (http(s) or ws(s)); unset = no tunnel (direct relays only). */
  EDGE_URL: optionalString,
  /** The agent private key (Ed25519 JWK JSON) the tunnel logs in with; the edge binds its public half to clusters. */
  AGENT_KEY: optionalString,
  /** Which cluster of the region this agent serves: sandbox ids name it, the edge routes by it. */
  CLUSTER_ID: ClusterIdSchema.default("default"),
  /** Live sandboxes (POST /v1/sandboxes) per tenant in this cluster. */
  TENANT_MAX_SANDBOXES: intVar(8, 0, 100_000),
  /** Largest file one PUT /v1/sandboxes/:id/files/... may write. */
  MAX_FILE_BYTES: intVar(SANDBOX_LIMITS.defaultMaxFileBytes, 0, SANDBOX_LIMITS.defaultMaxFileBytes),
  /**
   * The egress proxy (cluster-agent/egress/): `on` runs it in this process and points sandboxes'
   * tools at it; `off` (the default) runs none, and sandboxes have no network at all.
   */
  EGRESS: z.enum(["off", "on"]).default("off"),
  /** Where the proxy listens (on AGENT_HOST). */
  EGRESS_PORT: intVar(3128, 0, 65535),
  /** What sandboxes dial (HTTP_PROXY); default `http://<POD_IP>:<EGRESS_PORT>`, no DNS needed. */
  EGRESS_PROXY_URL: optionalString,
  /** This agent pod's IP (Downward API status.podIP). */
  POD_IP: optionalString,
  /**
   * CIDRs (comma-separated) sandboxes may never reach, added to the built-in list (loopback,
   * link-local and metadata, RFC 1918, CGNAT, IPv6 local): the cluster's pod and service ranges
   * when they are outside those.
   */
  EGRESS_FORBIDDEN_CIDRS: optionalString,
  /** Open connections through the proxy per sandbox. */
  EGRESS_MAX_CONNECTIONS_PER_SANDBOX: intVar(64, 1, 100_000),
  /** Bytes (both ways) one sandbox may move through one replica's proxy; 0 = no cap. */
  EGRESS_MAX_BYTES_PER_SANDBOX: intVar(0, 0, Number.MAX_SAFE_INTEGER),
  /**
   * `on` lets a policy allow every destination (`*`, `0.0.0.0/0`, `::/0`): the forbidden ranges
   * still apply. Off by default: such a policy is refused with 400 invalid_request.
   */
  EGRESS_ALLOW_ANY_HOST: z.enum(["off", "on"]).default("off"),
  /**
   * Where the tenants' secrets (/v1/secrets, one Kubernetes Secret per tenant) and the egress CA
   * are kept: the agent's own namespace, never the sandboxes'.
   */
  SECRETS_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label")
    .max(63)
    .default("pi-sandbox-system"),
  /** Secrets one tenant may store. */
  MAX_SECRETS_PER_TENANT: intVar(32, 1, 256),
});

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isJwks = (v: unknown): v is JSONWebKeySet => isObject(v) && Array.isArray(v.keys) && v.keys.length > 0;
const isPrivateJwk = (v: unknown): v is JWK =>
  isObject(v) && typeof v.kty === "string" && typeof v.d === "string";

/** A JSON setting of the right shape, or an issue on it naming what is wrong. */
function jsonSetting<T>(
  text: string | undefined,
  name: string,
  check: (v: unknown) => v is T,
  ctx: z.RefinementCtx,
): T | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    ctx.addIssue({ code: "custom", path: [name], message: `${name} is not valid JSON` });
    return undefined;
  }
  if (check(v)) return v;
  ctx.addIssue({ code: "custom", path: [name], message: `${name} has the wrong shape` });
  return undefined;
}

/** AGENT_ID wins, then the pod name (Downward API), then a random id unique per process. */
function agentIdFrom(agentId: string | undefined, podName: string | undefined): string {
  return agentId ?? podName ?? `agent-${randomBytes(4).toString("hex")}`;
}

/**
 * Leader election gives up leading when it has not renewed for 2/3 of the lease, and each renewal
 * gets at least this much time (pool/leader.ts): a lease shorter than 1.5 × it would drop
 * leadership while a renewal is still allowed to be in flight.
 */
const LEADER_MIN_REQUEST_MS = 1_000;

/**
 * The environment, each setting checked on its own and then the relations between them; the
 * output is the agent's configuration (model and chat options are read by their own modules).
 */
const AgentSettingsSchema = EnvConfigSchema.transform((e, ctx) => {
  if (e.POOL_MAX_PODS < e.POOL_SIZE) {
    ctx.addIssue({
      code: "custom",
      path: ["POOL_MAX_PODS"],
      message: `POOL_MAX_PODS (${e.POOL_MAX_PODS}) must be at least POOL_SIZE (${e.POOL_SIZE}): the cap counts every sandbox pod, the warm free ones included`,
    });
  }
  if ((e.LEADER_LEASE_SECONDS * 1000 * 2) / 3 <= LEADER_MIN_REQUEST_MS) {
    ctx.addIssue({
      code: "custom",
      path: ["LEADER_LEASE_SECONDS"],
      message: `LEADER_LEASE_SECONDS (${e.LEADER_LEASE_SECONDS}) must be at least 2: the leader steps down after 2/3 of it without a renewal, and a renewal may take ${LEADER_MIN_REQUEST_MS} ms`,
    });
  }
  const agentId = agentIdFrom(e.AGENT_ID, e.POD_NAME);
  // The holder identity is `${agentId}/${requestId}`: a slash in the agent id would make it ambiguous.
  if (agentId.includes("/")) {
    ctx.addIssue({ code: "custom", path: ["AGENT_ID"], message: "AGENT_ID must not contain '/'" });
  }
  const relayPublicKeys = jsonSetting(e.RELAY_PUBLIC_KEYS, "RELAY_PUBLIC_KEYS", isJwks, ctx);
  if (e.RELAY_PUBLIC_KEYS === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["RELAY_PUBLIC_KEYS"],
      message: "RELAY_PUBLIC_KEYS is required: the agent serves only relays the edge signed",
    });
  }
  // Each pod's exec token is derived from the pool token: without it nobody can call the exec server.
  if ((e.EXEC_MODE !== "api" || e.RECYCLE !== "replace") && !e.POOL_TOKEN) {
    ctx.addIssue({
      code: "custom",
      path: ["POOL_TOKEN"],
      message: "POOL_TOKEN is required with EXEC_MODE=http|pydantic-http or RECYCLE=scrub|reuse-same-tenant",
    });
  }
  // Scrubbing is our exec server's /reset and /inspect; the contract has neither, so a pod is
  // never handed to anyone after its holder: it is replaced.
  if (e.EXEC_MODE === "pydantic-http" && e.RECYCLE !== "replace") {
    ctx.addIssue({
      code: "custom",
      path: ["RECYCLE"],
      message: `RECYCLE=${e.RECYCLE} needs our exec server's /reset and /inspect; EXEC_MODE=pydantic-http allows only RECYCLE=replace`,
    });
  }
  if (e.METRICS_PORT !== 0 && e.METRICS_PORT === e.AGENT_PORT) {
    ctx.addIssue({
      code: "custom",
      path: ["METRICS_PORT"],
      message: `METRICS_PORT must differ from AGENT_PORT (${e.AGENT_PORT}): metrics have a port of their own`,
    });
  }
  const egress = egressSettings(e, ctx);
  const agentKey = jsonSetting(e.AGENT_KEY, "AGENT_KEY", isPrivateJwk, ctx);
  if (e.EDGE_URL !== undefined && e.AGENT_KEY === undefined) {
    ctx.addIssue({ code: "custom", path: ["EDGE_URL"], message: "EDGE_URL needs AGENT_KEY to log in" });
  }
  return {
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
    /** 0 = no per-tenant cap. */
    tenantMaxLeases: e.TENANT_MAX_LEASES,
    /** A tenant's share of the pool in leases (0 = no share rule); see TENANT_POOL_SHARE_PERCENT. */
    tenantShareLeases: tenantShare(e.POOL_SIZE, e.POOL_MAX_PODS, e.TENANT_POOL_SHARE_PERCENT),
    sandboxImage: e.SANDBOX_IMAGE,
    podTemplatePath: e.SANDBOX_POD_TEMPLATE,
    runtimeClassName: e.SANDBOX_RUNTIME_CLASS,
    agentId,
    region: e.REGION,
    execMode: e.EXEC_MODE,
    poolToken: e.POOL_TOKEN,
    agentPort: e.AGENT_PORT,
    metricsPort: e.METRICS_PORT,
    podReadyTimeoutSeconds: e.POD_READY_TIMEOUT_SECONDS,
    agentHost: e.AGENT_HOST,
    logLevel: e.LOG_LEVEL,
    /** Required: the agent serves only relays the edge signed (an issue above when missing). */
    relayPublicKeys: relayPublicKeys as JSONWebKeySet,
    edgeUrl: e.EDGE_URL,
    agentKey,
    clusterId: e.CLUSTER_ID,
    tenantMaxSandboxes: e.TENANT_MAX_SANDBOXES,
    maxFileBytes: e.MAX_FILE_BYTES,
    secretsNamespace: e.SECRETS_NAMESPACE,
    maxSecretsPerTenant: e.MAX_SECRETS_PER_TENANT,
    /** undefined = EGRESS=off: no proxy, no network for sandboxes. */
    egress,
  };
});

export interface EgressSettings {
  port: number;
  /** What sandboxes dial; undefined = `http://<podIp>:<the port the proxy got>`. */
  proxyUrl: string | undefined;
  podIp: string | undefined;
  /** The built-in forbidden ranges plus EGRESS_FORBIDDEN_CIDRS. */
  forbidden: string[];
  maxConnectionsPerSandbox: number;
  /** undefined = no cap. */
  maxBytesPerSandbox: number | undefined;
  /** EGRESS_ALLOW_ANY_HOST: may a policy allow every destination? */
  allowAnyHost: boolean;
}

function egressSettings(
  e: z.output<typeof EnvConfigSchema>,
  ctx: z.RefinementCtx,
): EgressSettings | undefined {
  if (e.EGRESS === "off") return undefined;
  const extra = (e.EGRESS_FORBIDDEN_CIDRS ?? "")
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c !== "");
  const forbidden = [...DEFAULT_FORBIDDEN, ...extra];
  try {
    forbiddenRanges(forbidden);
  } catch (err) {
    ctx.addIssue({ code: "custom", path: ["EGRESS_FORBIDDEN_CIDRS"], message: (err as Error).message });
  }
  if (e.EGRESS_PROXY_URL !== undefined && !/^http:\/\/[^/]+:[0-9]+\/?$/.test(e.EGRESS_PROXY_URL))
    ctx.addIssue({
      code: "custom",
      path: ["EGRESS_PROXY_URL"],
      message: "EGRESS_PROXY_URL must be http://host:port",
    });
  if (e.EGRESS_PROXY_URL === undefined && e.POD_IP === undefined)
    ctx.addIssue({
      code: "custom",
      path: ["EGRESS"],
      message:
        "EGRESS=on needs POD_IP (Downward API) or EGRESS_PROXY_URL: what sandboxes dial to reach the proxy",
    });
  return {
    port: e.EGRESS_PORT,
    proxyUrl: e.EGRESS_PROXY_URL,
    podIp: e.POD_IP,
    forbidden,
    maxConnectionsPerSandbox: e.EGRESS_MAX_CONNECTIONS_PER_SANDBOX,
    maxBytesPerSandbox: e.EGRESS_MAX_BYTES_PER_SANDBOX || undefined,
    allowAnyHost: e.EGRESS_ALLOW_ANY_HOST === "on",
  };
}

export type AgentConfig = z.output<typeof AgentSettingsSchema> & {
  /** The model, or why there is none (chat then answers model_not_configured, naming what to set). */
  model: Result<ModelConfig>;
  chat: ChatOptionsInput;
};

export function loadConfig(env: Record<string, string | undefined> = process.env): Result<AgentConfig> {
  const parsed = AgentSettingsSchema.safeParse(env);
  if (!parsed.success) {
    const details = zodDetails(parsed.error);
    const first = details[0];
    // A relation's message names its settings itself; a single field's is prefixed with its name.
    const what = !first
      ? "?"
      : first.message.startsWith(first.path)
        ? first.message
        : `${first.path}: ${first.message}`;
    return err(new AppError("invalid_request", `invalid agent configuration: ${what}`, { details }));
  }
  const chat = readChatOptions(env);
  if (!chat.ok) return chat;
  return ok({ ...parsed.data, model: readModelConfig(env), chat: chat.value });
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
