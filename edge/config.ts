import type { JSONWebKeySet, JWK } from "jose";
import { z } from "zod";
import { LIMITS, SANDBOX_LIMITS } from "../shared/api.ts";
import { AGENT_KEY_CLUSTERS_MEMBER, isClusterName } from "../shared/tunnel.ts";

/**
 * The Worker's configuration, validated in one place. Everything comes from `env` (wrangler vars
 * and secrets); a bad value fails the request with a clear `internal` error rather than running
 * half-configured.
 */

const csv = z.string().transform((s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean),
);
const int = (def: number) => z.coerce.number().int().nonnegative().default(def);
const pos = (def: number) => z.coerce.number().positive().default(def);

const JwkSchema = z.looseObject({ kty: z.string() }).transform((j) => j as JWK);
const JwksSchema = z.object({ keys: z.array(JwkSchema).min(1) }).transform((j) => j as JSONWebKeySet);
/**
 * An agent public key may carry `clusters`: the clusters of its region a login signed with it may
 * claim (shared/tunnel.ts agentKeyClusters). Absent means only "default" (the single-cluster case).
 */
const AgentJwkSchema = z
  .looseObject({
    kty: z.string(),
    [AGENT_KEY_CLUSTERS_MEMBER]: z
      .array(z.string().refine(isClusterName, "a cluster name is [a-z0-9-]{1,32}"))
      .min(1, 'clusters: name at least one cluster (omit it for only "default")')
      .max(64)
      .optional(),
  })
  .transform((j) => j as JWK);
const AgentJwksSchema = z
  .object({ keys: z.array(AgentJwkSchema).min(1) })
  .transform((j) => j as JSONWebKeySet);
const jsonOf = <S extends z.ZodType>(schema: S) =>
  z.string().transform((text, ctx): z.output<S> => {
    try {
      const parsed = schema.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: "custom", message: parsed.error.issues[0]?.message ?? "invalid" });
    } catch {
      ctx.addIssue({ code: "custom", message: "not JSON" });
    }
    return z.NEVER;
  });

const RawConfigSchema = z.object({
  ENVIRONMENT: z.enum(["dev", "test", "staging", "production"]).default("production"),
  REGIONS: csv.pipe(z.array(z.string().regex(/^[a-z0-9-]{1,32}$/)).min(1)),
  JWT_ISSUER: z.string().min(1),
  JWT_AUDIENCE: z.string().min(1),
  JWT_JWKS_URL: z.url().optional(),
  JWT_JWKS: jsonOf(JwksSchema).optional(),
  JWT_ALGORITHMS: csv
    .pipe(z.array(z.enum(["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"])).min(1))
    .default(["RS256", "ES256", "EdDSA"]),
  JWT_CLOCK_TOLERANCE_SECONDS: int(5),
  TENANT_CLAIM: z.string().min(1).default("tenant"),
  REGION_CLAIM: z.string().min(1).default("region"),
  TENANT_QUOTA_BURST: pos(120),
  TENANT_QUOTA_PER_MINUTE: pos(600),
  MAX_BODY_BYTES: int(LIMITS.requestBodyBytes),
  MAX_FILE_BYTES: int(SANDBOX_LIMITS.defaultMaxFileBytes),
  RELAY_TIMEOUT_SECONDS: pos(60),
  AGENT_PUBLIC_KEYS: jsonOf(z.record(z.string(), AgentJwksSchema)),
  RELAY_PRIVATE_KEYS: jsonOf(z.record(z.string(), JwkSchema)),
  LOG_REQUEST_TIMING: z.enum(["true", "false"]).default("false"),
  // Admin is granted by who the token is, not by the scope alone (the issuer lets tenants ask for
  // scopes): a `sub` in this list, or a token for ADMIN_AUDIENCE. Both empty (the default): no admin.
  ADMIN_SUBJECTS: csv.pipe(z.array(z.string().min(1).max(256))).default([]),
  ADMIN_AUDIENCE: z.string().min(1).optional(),
  // Hostnames a dev/test edge answers on besides loopback and *.localhost/*.test (e.g. the kind
  // network's gateway address an in-cluster agent dials).
  LOCAL_HOSTS: csv.pipe(z.array(z.string().regex(/^[a-z0-9.:[\]-]{1,253}$/i))).default([]),
});

export interface EdgeConfig {
  environment: "dev" | "test" | "staging" | "production";
  regions: string[];
  jwt: {
    issuer: string;
    audience: string;
    jwksUrl: string | undefined;
    jwks: JSONWebKeySet | undefined;
    algorithms: string[];
    clockToleranceSeconds: number;
    tenantClaim: string;
    regionClaim: string;
    /** `sub` values whose `sandbox:admin` scope is honoured (ADMIN_SUBJECTS). */
    adminSubjects: string[];
    /** Tokens for this audience (also accepted) have their `sandbox:admin` honoured (ADMIN_AUDIENCE). */
    adminAudience: string | undefined;
  };
  quota: { burst: number; refillPerSecond: number };
  maxBodyBytes: number;
  /** Largest file one PUT /v1/sandboxes/:id/files/... may carry. */
  maxFileBytes: number;
  relayTimeoutMs: number;
  agentPublicKeys: Record<string, JSONWebKeySet>;
  relayPrivateKeys: Record<string, JWK>;
  /** Log each request's timing spans (one line per request). */
  logRequestTiming: boolean;
  /** Extra hostnames a dev/test edge answers on (LOCAL_HOSTS); see isLocalHost. */
  localHosts: string[];
}

export type ConfigResult = { ok: true; config: EdgeConfig } | { ok: false; message: string };

const cache = new WeakMap<object, ConfigResult>();

/** Parse (once per env object) and cross-check the configuration. */
export function loadConfig(env: object): ConfigResult {
  const cached = cache.get(env);
  if (cached) return cached;
  const result = parse(env);
  cache.set(env, result);
  return result;
}

function parse(env: object): ConfigResult {
  const parsed = RawConfigSchema.safeParse(env);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { ok: false, message: `edge misconfigured: ${i ? `${i.path.join(".")}: ${i.message}` : "?"}` };
  }
  const r = parsed.data;
  if (!r.JWT_JWKS_URL && !r.JWT_JWKS)
    return { ok: false, message: "edge misconfigured: JWT_JWKS_URL or JWT_JWKS" };
  for (const region of r.REGIONS) {
    if (!r.AGENT_PUBLIC_KEYS[region])
      return { ok: false, message: `edge misconfigured: no agent keys for ${region}` };
    if (!r.RELAY_PRIVATE_KEYS[region])
      return { ok: false, message: `edge misconfigured: no relay key for ${region}` };
  }
  if (r.ENVIRONMENT !== "test") {
    // The committed test keys (test/workers/fixtures/test-keys.ts) all carry a `test-` kid: their
    // private halves are public, so only the test projects may run with them — not even dev, which
    // generates its own keys (devstack) or reads them from .dev.vars.
    const all = [
      ...Object.values(r.RELAY_PRIVATE_KEYS),
      ...Object.values(r.AGENT_PUBLIC_KEYS).flatMap((s) => s.keys),
      ...(r.JWT_JWKS?.keys ?? []),
    ];
    if (all.some((k) => typeof k.kid === "string" && k.kid.startsWith("test-"))) {
      return {
        ok: false,
        message: `edge misconfigured: test keys (kid test-…) with ENVIRONMENT=${r.ENVIRONMENT}`,
      };
    }
  }
  return {
    ok: true,
    config: {
      environment: r.ENVIRONMENT,
      regions: r.REGIONS,
      jwt: {
        issuer: r.JWT_ISSUER,
        audience: r.JWT_AUDIENCE,
        jwksUrl: r.JWT_JWKS_URL,
        jwks: r.JWT_JWKS,
        algorithms: r.JWT_ALGORITHMS,
        clockToleranceSeconds: r.JWT_CLOCK_TOLERANCE_SECONDS,
        tenantClaim: r.TENANT_CLAIM,
        regionClaim: r.REGION_CLAIM,
        adminSubjects: r.ADMIN_SUBJECTS,
        adminAudience: r.ADMIN_AUDIENCE,
      },
      quota: { burst: r.TENANT_QUOTA_BURST, refillPerSecond: r.TENANT_QUOTA_PER_MINUTE / 60 },
      maxBodyBytes: r.MAX_BODY_BYTES,
      maxFileBytes: r.MAX_FILE_BYTES,
      relayTimeoutMs: r.RELAY_TIMEOUT_SECONDS * 1000,
      agentPublicKeys: r.AGENT_PUBLIC_KEYS,
      relayPrivateKeys: r.RELAY_PRIVATE_KEYS,
      logRequestTiming: r.LOG_REQUEST_TIMING === "true",
      localHosts: r.LOCAL_HOSTS.map((h) => h.toLowerCase()),
    },
  };
}

/**
 * Whether a dev/test edge may answer a request for `hostname` (URL hostname: IPv6 in brackets).
 * Such an edge trusts local or test keys, so it must not be reachable under a public name: loopback,
 * `*.localhost` and `*.test` (RFC 6761 names that never route to a deployed Worker), plus LOCAL_HOSTS.
 */
export function isLocalHost(hostname: string, extra: readonly string[]): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, "");
  if (h === "localhost" || h.endsWith(".localhost") || h.endsWith(".test")) return true;
  if (h === "[::1]" || /^127(?:\.\d{1,3}){3}$/.test(h)) return true;
  return extra.includes(h);
}
