import { base64url, jwtVerify, SignJWT } from "jose";
import { z } from "zod";
import { LinkIdSchema, SandboxIdSchema } from "./api.ts";
import { AppError, err, ok, type Result } from "./errors.ts";

/**
 * A port link's token: an HS256 JWT the edge signs when the agent has recorded the link, bound to
 * the link id, the sandbox, its tenant, the port, public or not, and the expiry. The edge checks it
 * on every request to the link (before anything is relayed: a forged or expired one costs no
 * tunnel trip); the agent then checks the link is still on the sandbox (revocation, the sandbox's
 * end). Every failure is the same `link_not_found`, so a probe learns nothing about the target.
 */

const TYP = "pi-port-link";

export const PortLinkClaimsSchema = z.object({
  lid: LinkIdSchema,
  sid: SandboxIdSchema,
  tid: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
  pub: z.boolean(),
  /** Seconds since the epoch. */
  exp: z.number().int().positive(),
});
export type PortLinkClaims = z.infer<typeof PortLinkClaimsSchema>;

export const linkNotFound = () =>
  new AppError("link_not_found", "no such link: it is malformed, expired, revoked, or its sandbox is gone");

/**
 * The signing key of one region's links, derived (HKDF-SHA256) from the region's relay key
 * material, so no new secret has to be deployed and a link token can never pass as a relay
 * token (another key, another algorithm, another `typ`).
 */
export async function portLinkKey(secret: string): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), "HKDF", false, [
    "deriveKey",
  ]);
  return crypto.subtle.deriveKey(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: new TextEncoder().encode("pi-sandbox-runtime"),
      info: new TextEncoder().encode("port-link-token v1"),
    },
    base,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

/** Deterministic for the same claims (HMAC, no iat/jti): a listed link keeps its URL. */
export function signPortLink(key: CryptoKey, claims: PortLinkClaims): Promise<string> {
  const { exp, ...rest } = claims;
  return new SignJWT(rest).setProtectedHeader({ alg: "HS256", typ: TYP }).setExpirationTime(exp).sign(key);
}

export async function verifyPortLink(
  key: CryptoKey,
  token: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<Result<PortLinkClaims>> {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      typ: TYP,
      currentDate: new Date(nowSeconds * 1000),
      clockTolerance: 0,
    });
    if (protectedHeader.typ !== TYP) return err(linkNotFound());
    const claims = PortLinkClaimsSchema.safeParse(payload);
    return claims.success ? ok(claims.data) : err(linkNotFound());
  } catch {
    return err(linkNotFound());
  }
}

/**
 * The sandbox a token names, read WITHOUT verifying it: only to pick the region whose key then
 * verifies it. Nothing else may be taken from an unverified token.
 */
export function unverifiedSandboxOf(token: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || token.length > 4096) return undefined;
  try {
    const payload: unknown = JSON.parse(new TextDecoder().decode(base64url.decode(parts[1] ?? "")));
    const sid = (payload as { sid?: unknown } | null)?.sid;
    return typeof sid === "string" ? sid : undefined;
  } catch {
    return undefined;
  }
}
