import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
} from "jose";

/**
 * Ed25519 keys for the two signatures between edge and agent: the edge signs relays with a
 * region's relay key, the agent signs its tunnel login with the region's agent key. Web Crypto
 * only (through jose), so this runs in workerd and in Node alike.
 */

/** Signatures we produce use `EdDSA` (widest support); `Ed25519` (RFC 9864) is accepted too. */
export const SIGNING_ALG = "EdDSA";
export const ACCEPTED_SIGNING_ALGS = ["EdDSA", "Ed25519"] as const;

export interface SigningKeyPair {
  kid: string;
  /** Private JWK (has `d`): keep secret, e.g. a Worker secret or a Kubernetes Secret. */
  privateJwk: JWK;
  /** Public JWK: safe to publish, goes into the verifier's key set. */
  publicJwk: JWK;
}

function randomKid(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function generateSigningKeyPair(kid: string = randomKid()): Promise<SigningKeyPair> {
  const { publicKey, privateKey } = await generateKeyPair("Ed25519", { extractable: true });
  const meta = { kid, alg: SIGNING_ALG, use: "sig" } as const;
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
  };
}

/** The public half of a private JWK (drops `d`), for building key sets from a private key. */
export function publicJwkOf(jwk: JWK): JWK {
  const { d: _d, ...pub } = jwk;
  return pub;
}

export interface ImportedSigningKey {
  key: CryptoKey;
  kid: string | undefined;
}

/** Import an Ed25519 private JWK for signing; anything else is refused. */
export async function importPrivateSigningKey(jwk: JWK): Promise<ImportedSigningKey> {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string") {
    throw new TypeError("expected an Ed25519 private JWK (kty OKP, crv Ed25519, with d)");
  }
  const key = await importJWK(jwk, SIGNING_ALG);
  if (!(key instanceof CryptoKey)) throw new TypeError("Ed25519 JWK imported as raw bytes");
  return { key, kid: jwk.kid };
}

/**
 * A key resolver over a set of public Ed25519 JWKs (several allow rotation; tokens pick by `kid`).
 * Non-Ed25519 and private keys are dropped, so a confused config cannot widen what verifies.
 */
export function publicKeyResolver(keys: JSONWebKeySet | readonly JWK[]): JWTVerifyGetKey {
  const list = Array.isArray(keys) ? keys : (keys as JSONWebKeySet).keys;
  const usable = list
    .filter((k) => k.kty === "OKP" && k.crv === "Ed25519" && typeof k.x === "string")
    // `alg` is dropped so EdDSA and Ed25519 tokens both resolve; the verifier's allow-list decides.
    .map((k) => {
      const { alg: _alg, ...rest } = publicJwkOf(k);
      return rest;
    });
  if (usable.length === 0) throw new TypeError("no Ed25519 public keys in the key set");
  return createLocalJWKSet({ keys: usable });
}
