import { type JSONWebKeySet, SignJWT } from "jose";
import { SCOPES } from "../shared/api.ts";
import { generateSigningKeyPair, importPrivateSigningKey, type SigningKeyPair } from "../shared/jwt-keys.ts";

export const DEV_ISSUER = "https://dev-issuer.pi-sandbox.local";
export const DEV_AUDIENCE = "pi-sandbox-api";
/**
 * The one subject the local edge honours `sandbox:admin` for (its ADMIN_SUBJECTS): a tenant token
 * that merely carries the scope is refused on the admin routes, locally as in production.
 */
export const DEV_ADMIN_SUBJECT = "admin";

export interface DevTokenClaims {
  tenant: string;
  subject: string;
  scopes: string[];
  /** Seconds; default 12 h. */
  ttlSeconds?: number;
  region?: string;
}

/** A throwaway JWT issuer for local use: the edge trusts its JWKS, so its tokens are real tokens. */
export interface DevIssuer {
  issuer: string;
  audience: string;
  jwks: JSONWebKeySet;
  mint(claims: DevTokenClaims): Promise<string>;
}

export async function createDevIssuer(): Promise<DevIssuer> {
  const pair: SigningKeyPair = await generateSigningKeyPair("dev-issuer-1");
  const { key } = await importPrivateSigningKey(pair.privateJwk);
  return {
    issuer: DEV_ISSUER,
    audience: DEV_AUDIENCE,
    jwks: { keys: [pair.publicJwk] },
    async mint(c) {
      const jwt = new SignJWT({
        tenant: c.tenant,
        scope: c.scopes.join(" "),
        ...(c.region ? { region: c.region } : {}),
      })
        .setProtectedHeader({ alg: "EdDSA", kid: pair.kid, typ: "JWT" })
        .setIssuer(DEV_ISSUER)
        .setAudience(DEV_AUDIENCE)
        .setSubject(c.subject)
        .setIssuedAt()
        .setExpirationTime(`${c.ttlSeconds ?? 12 * 3600}s`);
      return jwt.sign(key);
    },
  };
}

/** The three ready-made tokens `npm start` prints. */
export async function devTokens(
  issuer: DevIssuer,
): Promise<{ tenantA: string; tenantB: string; admin: string }> {
  const user = [SCOPES.exec, SCOPES.chat, SCOPES.secrets];
  return {
    tenantA: await issuer.mint({ tenant: "tenant-a", subject: "alice", scopes: user }),
    tenantB: await issuer.mint({ tenant: "tenant-b", subject: "bob", scopes: user }),
    admin: await issuer.mint({ tenant: "ops", subject: DEV_ADMIN_SUBJECT, scopes: [...user, SCOPES.admin] }),
  };
}
