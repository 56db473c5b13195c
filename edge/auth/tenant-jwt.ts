import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { SCOPES } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { tokenError } from "../../shared/token-errors.ts";
import type { EdgeConfig } from "../config.ts";

/** Who is calling, as established by a verified tenant JWT. */
export interface Principal {
  tenant: string;
  subject: string;
  /** The scopes the token carries and the edge grants: `sandbox:admin` only for an admin (isAdmin). */
  scopes: string[];
  /** The region the token pins the tenant to, if it says so. */
  region: string | undefined;
}

export interface TokenVerifier {
  verify(token: string | undefined): Promise<Result<Principal>>;
}

// Module scope: one key set per isolate, so jose's cache (and cooldown) outlives a request.
const remoteSets = new Map<string, JWTVerifyGetKey>();
const localSets = new Map<string, JWTVerifyGetKey>();

function keySet(cfg: EdgeConfig["jwt"]): JWTVerifyGetKey {
  if (cfg.jwks) {
    const k = JSON.stringify(cfg.jwks);
    let set = localSets.get(k);
    if (!set) {
      set = createLocalJWKSet(cfg.jwks);
      localSets.set(k, set);
    }
    return set;
  }
  const url = cfg.jwksUrl!;
  let set = remoteSets.get(url);
  if (!set) {
    set = createRemoteJWKSet(new URL(url), { timeoutDuration: 5000, cooldownDuration: 30_000 });
    remoteSets.set(url, set);
  }
  return set;
}

/** `scope` (space-separated, RFC 8693) or `scp` (array, or space-separated string). */
export function scopesOf(payload: JWTPayload): string[] {
  const out = new Set<string>();
  const add = (v: unknown) => {
    if (typeof v === "string") for (const s of v.split(/\s+/)) if (s) out.add(s);
    if (Array.isArray(v)) for (const s of v) if (typeof s === "string" && s) out.add(s);
  };
  add(payload.scope);
  add(payload.scp);
  return [...out];
}

function claimAt(payload: JWTPayload, path: string): unknown {
  // Dotted paths reach nested claims (e.g. `org.id`); a literal key with dots wins if present.
  if (path in payload) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split(".")) {
    if (!cur || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export function createTokenVerifier(cfg: EdgeConfig["jwt"]): TokenVerifier {
  return {
    async verify(token) {
      if (!token) return err(new AppError("unauthenticated", "missing bearer token"));
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySet(cfg), {
          algorithms: cfg.algorithms,
          issuer: cfg.issuer,
          audience: cfg.adminAudience ? [cfg.audience, cfg.adminAudience] : cfg.audience,
          clockTolerance: cfg.clockToleranceSeconds,
          requiredClaims: ["exp", "sub"],
        }));
      } catch (e) {
        return err(tokenError(e));
      }
      const tenant = claimAt(payload, cfg.tenantClaim);
      if (typeof tenant !== "string" || !/^[A-Za-z0-9._:@-]{1,128}$/.test(tenant)) {
        return err(new AppError("missing_tenant", `token has no usable "${cfg.tenantClaim}" claim`));
      }
      const region = claimAt(payload, cfg.regionClaim);
      return ok({
        tenant,
        subject: payload.sub!,
        scopes: grantedScopes(payload, cfg),
        region: typeof region === "string" ? region : undefined,
      });
    },
  };
}

/**
 * The token's scopes, less `sandbox:admin` unless the token is an admin's: the issuer mints
 * whatever scopes a tenant's client asks for, so the scope alone proves nothing. Dropping it here
 * means every later check — the edge's routes and the agent's, which sees only these scopes in the
 * signed relay — refuses it the same way.
 */
function grantedScopes(payload: JWTPayload, cfg: EdgeConfig["jwt"]): string[] {
  const scopes = scopesOf(payload);
  return isAdmin(payload, cfg) ? scopes : scopes.filter((s) => s !== SCOPES.admin);
}

/** ADMIN_SUBJECTS names the token's `sub`, or the token is for ADMIN_AUDIENCE. Neither set: nobody. */
export function isAdmin(payload: JWTPayload, cfg: EdgeConfig["jwt"]): boolean {
  if (typeof payload.sub === "string" && cfg.adminSubjects.includes(payload.sub)) return true;
  const aud = typeof payload.aud === "string" ? [payload.aud] : (payload.aud ?? []);
  return cfg.adminAudience !== undefined && aud.includes(cfg.adminAudience);
}
