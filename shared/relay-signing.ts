import {
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from "jose";
import { z } from "zod";
import { AppError, err, ok, type Result } from "./errors.ts";
import {
  ACCEPTED_SIGNING_ALGS,
  importPrivateSigningKey,
  publicKeyResolver,
  SIGNING_ALG,
} from "./jwt-keys.ts";

/**
 * Signed relay: the edge vouches for one specific request (method, path with query, body hash)
 * on behalf of one tenant, for at most 30 seconds, exactly once (jti + replay cache). The agent
 * trusts nothing about the request it did not get signed here. Web Crypto only (runs in workerd
 * and Node).
 */

export const RELAY_HEADER = "X-Relay-Signature";
export const RELAY_TOKEN_TYPE = "relay+jwt";
export const RELAY_ISSUER = "pi-sandbox-edge";
/** Hard ceiling on a relay token's lifetime, enforced when signing and when verifying. */
export const RELAY_MAX_TTL_SECONDS = 30;
export const RELAY_DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;

/** The audience of relays to the agents of one region. */
export const relayAudience = (region: string): string => `pi-sandbox-agent:${region}`;

/** What a verified relay says, after checking it matches the request being served. */
export interface RelayClaims {
  method: string;
  /** Path including the query string, exactly as the agent sees it. */
  path: string;
  /** The body's hash; null for a streamed body, whose hash comes in the signed trailer (verifyTrailer). */
  bodySha256: string | null;
  tenant: string;
  subject: string;
  scopes: string[];
  requestId: string;
  iat: number;
  exp: number;
  jti: string;
  iss: string;
  aud: string;
}

const RelayPayloadSchema = z.object({
  iss: z.string().min(1),
  aud: z.union([z.string().min(1), z.array(z.string().min(1)).length(1)]),
  sub: z.string().min(1),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.string().min(16),
  htm: z.string().min(1),
  htp: z.string().startsWith("/"),
  bsh: z
    .string()
    .regex(/^[A-Za-z0-9_-]{43}$/)
    .optional(),
  /** The body streams and its hash comes in a trailer token (then there is no `bsh`). */
  btr: z.literal(true).optional(),
  ten: z.string().min(1),
  scp: z.array(z.string()),
  rid: z.string().min(1),
});

// ---------- hashing ----------

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export type RelayBody = Uint8Array | ArrayBuffer | string | null | undefined;

function bodyBytes(body: RelayBody): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return new TextEncoder().encode(body);
  return body instanceof Uint8Array ? body : new Uint8Array(body);
}

/** SHA-256 of the body, base64url without padding (an absent body hashes as empty). */
export async function bodySha256(body: RelayBody): Promise<string> {
  const bytes = bodyBytes(body);
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return base64url(new Uint8Array(digest));
}

/** The path the signature binds: pathname plus query string, as a URL normalises them. */
export function relayPathOf(url: string | URL): string {
  const u = typeof url === "string" ? new URL(url) : url;
  return `${u.pathname}${u.search}`;
}

function randomJti(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(18)));
}

// ---------- signing ----------

/** A relay whose body streams: the head binds everything but the body; the trailer binds the body. */
export const STREAMED_BODY = "streamed" as const;
export const RELAY_TRAILER_TOKEN_TYPE = "relay-trailer+jwt";

/** What a trailer token binds: the head token's jti and the body that passed (hash and length). */
export interface RelayTrailerInput {
  headJti: string;
  bodySha256: string;
  size: number;
}

const RelayTrailerPayloadSchema = z.object({
  iss: z.string().min(1),
  aud: z.union([z.string().min(1), z.array(z.string().min(1)).length(1)]),
  iat: z.number().int(),
  rjt: z.string().min(16),
  bsh: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  bln: z.number().int().nonnegative(),
});

/** Incremental SHA-256 of a streamed body, as `bodySha256` would give for the whole (base64url). */
export function digestToBase64url(digest: ArrayBuffer | Uint8Array): string {
  return base64url(digest instanceof Uint8Array ? digest : new Uint8Array(digest));
}

export interface RelaySignInput {
  method: string;
  path: string;
  /** The body, or `streamed`: its hash follows in a trailer token (`signTrailer`) once it has passed. */
  body?: RelayBody | typeof STREAMED_BODY;
  tenant: string;
  subject: string;
  scopes: readonly string[];
  requestId: string;
}

export interface RelaySignerOptions {
  /** Ed25519 private JWK (the region's relay key). */
  privateJwk: JWK;
  /** The region's audience, usually `relayAudience(region)`. */
  audience: string;
  issuer?: string;
  /** ≤ 30; default 30. */
  ttlSeconds?: number;
  /** Seconds since the epoch; injectable for tests. */
  now?: () => number;
}

export interface RelaySigner {
  readonly audience: string;
  sign(input: RelaySignInput): Promise<string>;
  /** The trailer of a streamed body's relay: signed once the whole body has passed. */
  signTrailer(input: RelayTrailerInput): Promise<string>;
}

export async function createRelaySigner(opts: RelaySignerOptions): Promise<RelaySigner> {
  const ttl = opts.ttlSeconds ?? RELAY_MAX_TTL_SECONDS;
  if (!(ttl > 0 && ttl <= RELAY_MAX_TTL_SECONDS)) {
    throw new RangeError(`relay ttl must be in (0, ${RELAY_MAX_TTL_SECONDS}] seconds`);
  }
  const { key, kid } = await importPrivateSigningKey(opts.privateJwk);
  const issuer = opts.issuer ?? RELAY_ISSUER;
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  return {
    audience: opts.audience,
    async sign(input) {
      const iat = now();
      const header = kid
        ? { alg: SIGNING_ALG, typ: RELAY_TOKEN_TYPE, kid }
        : { alg: SIGNING_ALG, typ: RELAY_TOKEN_TYPE };
      const streamed = input.body === STREAMED_BODY;
      return new SignJWT({
        htm: input.method.toUpperCase(),
        htp: input.path,
        ...(streamed ? { btr: true } : { bsh: await bodySha256(input.body as RelayBody) }),
        ten: input.tenant,
        scp: [...input.scopes],
        rid: input.requestId,
      })
        .setProtectedHeader(header)
        .setIssuer(issuer)
        .setAudience(opts.audience)
        .setSubject(input.subject)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttl)
        .setJti(randomJti())
        .sign(key);
    },
    async signTrailer(input) {
      const iat = now();
      const header = kid
        ? { alg: SIGNING_ALG, typ: RELAY_TRAILER_TOKEN_TYPE, kid }
        : { alg: SIGNING_ALG, typ: RELAY_TRAILER_TOKEN_TYPE };
      return new SignJWT({ rjt: input.headJti, bsh: input.bodySha256, bln: input.size })
        .setProtectedHeader(header)
        .setIssuer(issuer)
        .setAudience(opts.audience)
        .setIssuedAt(iat)
        .sign(key);
    },
  };
}

// ---------- replay cache ----------

export interface ReplayCacheOptions {
  /** Most jtis held at once; past it (after evicting expired ones) new relays are refused. */
  maxEntries?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  nowMs?: () => number;
}

/**
 * Remembers every accepted jti until its token can no longer verify (exp + clock tolerance), so
 * memory is bounded by the expiry window. When full it fails closed with `rate_limited` (a
 * retry after the oldest entry expires succeeds) rather than forgetting jtis that could replay.
 */
export class ReplayCache {
  readonly maxEntries: number;
  private readonly nowMs: () => number;
  /** jti → time (ms) after which the entry is useless. Insertion order ≈ expiry order. */
  private readonly seen = new Map<string, number>();

  constructor(opts: ReplayCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 100_000;
    this.nowMs = opts.nowMs ?? Date.now;
  }

  get size(): number {
    return this.seen.size;
  }

  /** Record `jti` until `forgetAtMs`; an error if it was already seen or the cache is full. */
  remember(jti: string, forgetAtMs: number): Result<void> {
    const now = this.nowMs();
    this.evictExpiredFromFront(now);
    const known = this.seen.get(jti);
    if (known !== undefined && known > now) {
      return err(new AppError("relay_replayed", "relay token already used (jti replayed)"));
    }
    if (this.seen.size >= this.maxEntries) this.evictAllExpired(now);
    if (this.seen.size >= this.maxEntries) {
      const oldest = Math.min(...this.seen.values());
      const retryAfterSeconds = Math.max(1, Math.ceil((oldest - now) / 1000));
      return err(
        new AppError("rate_limited", `relay replay cache full (${this.maxEntries} live relays)`, {
          retryAfterSeconds,
        }),
      );
    }
    this.seen.delete(jti);
    this.seen.set(jti, forgetAtMs);
    return ok(undefined);
  }

  /** Drop every entry whose token can no longer verify. */
  prune(): void {
    this.evictAllExpired(this.nowMs());
  }

  private evictExpiredFromFront(now: number): void {
    for (const [jti, until] of this.seen) {
      if (until > now) return;
      this.seen.delete(jti);
    }
  }

  private evictAllExpired(now: number): void {
    for (const [jti, until] of this.seen) if (until <= now) this.seen.delete(jti);
  }
}

// ---------- verification ----------

export interface RelayVerifierOptions {
  /** The region's relay public keys (JWKS or list); Ed25519 only. */
  publicKeys: JSONWebKeySet | readonly JWK[];
  /** The audience this agent serves, usually `relayAudience(region)`. */
  audience: string;
  issuer?: string;
  clockToleranceSeconds?: number;
  /** ≤ 30; tokens living longer than this are refused even if correctly signed. */
  maxTtlSeconds?: number;
  replayCache?: ReplayCache;
  /** Seconds since the epoch; injectable for tests (drives the replay cache only if it has none). */
  now?: () => number;
}

export interface RelayRequestFacts {
  token: string | null | undefined;
  method: string;
  path: string;
  /** The body, or `streamed` when it is still to come (the token must then say so, `btr`). */
  body?: RelayBody | typeof STREAMED_BODY;
}

export interface RelayVerifier {
  verify(facts: RelayRequestFacts): Promise<Result<RelayClaims>>;
  /**
   * A streamed body's trailer: signed by the same keys for the head whose claims are given, and
   * naming exactly the bytes that arrived. Not replay-checked itself: it binds one head jti, which was.
   */
  verifyTrailer(
    token: string | null | undefined,
    head: RelayClaims,
    body: { sha256: string; size: number },
  ): Promise<Result<void>>;
  /** Reads the header and a clone of the body; the request stays readable. */
  verifyRequest(request: Request): Promise<Result<RelayClaims>>;
}

const invalid = (message: string) => err(new AppError("relay_signature_invalid", message));

export function createRelayVerifier(opts: RelayVerifierOptions): RelayVerifier {
  const keys: JWTVerifyGetKey = publicKeyResolver(opts.publicKeys);
  const issuer = opts.issuer ?? RELAY_ISSUER;
  const tolerance = opts.clockToleranceSeconds ?? RELAY_DEFAULT_CLOCK_TOLERANCE_SECONDS;
  const maxTtl = Math.min(opts.maxTtlSeconds ?? RELAY_MAX_TTL_SECONDS, RELAY_MAX_TTL_SECONDS);
  const nowSec = opts.now;
  const cache = opts.replayCache ?? new ReplayCache(nowSec ? { nowMs: () => nowSec() * 1000 } : {});

  async function verify(facts: RelayRequestFacts): Promise<Result<RelayClaims>> {
    if (!facts.token) return invalid(`missing ${RELAY_HEADER} header`);
    let payload: unknown;
    try {
      const verified = await jwtVerify(facts.token, keys, {
        algorithms: [...ACCEPTED_SIGNING_ALGS],
        issuer,
        audience: opts.audience,
        typ: RELAY_TOKEN_TYPE,
        clockTolerance: tolerance,
        maxTokenAge: maxTtl,
        requiredClaims: ["iss", "aud", "sub", "iat", "exp", "jti"],
        ...(nowSec ? { currentDate: new Date(nowSec() * 1000) } : {}),
      });
      payload = verified.payload;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired)
        return err(new AppError("relay_expired", "relay token expired"));
      const reason = e instanceof joseErrors.JOSEError ? e.code : "malformed";
      return invalid(`relay signature rejected (${reason})`);
    }
    const parsed = RelayPayloadSchema.safeParse(payload);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      return invalid(`relay claims incomplete: ${first ? `${first.path.join(".")} ${first.message}` : "?"}`);
    }
    const p = parsed.data;
    if (p.exp - p.iat > maxTtl) return invalid(`relay token lives longer than ${maxTtl}s`);
    if (p.exp <= p.iat) return invalid("relay token expires before it is issued");
    if (p.htm !== facts.method.toUpperCase()) return invalid("relay signed for another method");
    if (p.htp !== facts.path) return invalid("relay signed for another path");
    if (facts.body === STREAMED_BODY) {
      if (p.btr !== true || p.bsh !== undefined) return invalid("relay not signed for a streamed body");
    } else if (p.btr === true || p.bsh !== (await bodySha256(facts.body))) {
      return invalid("relay signed for another body");
    }

    // Only a token that is valid for this very request consumes a replay-cache slot.
    const seen = cache.remember(p.jti, (p.exp + tolerance) * 1000);
    if (!seen.ok) return seen;
    const aud = typeof p.aud === "string" ? p.aud : p.aud[0]!;
    return ok({
      method: p.htm,
      path: p.htp,
      bodySha256: p.bsh ?? null,
      tenant: p.ten,
      subject: p.sub,
      scopes: p.scp,
      requestId: p.rid,
      iat: p.iat,
      exp: p.exp,
      jti: p.jti,
      iss: p.iss,
      aud,
    });
  }

  async function verifyTrailer(
    token: string | null | undefined,
    head: RelayClaims,
    body: { sha256: string; size: number },
  ): Promise<Result<void>> {
    if (!token) return invalid("streamed body has no signed trailer");
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        algorithms: [...ACCEPTED_SIGNING_ALGS],
        issuer,
        audience: opts.audience,
        typ: RELAY_TRAILER_TOKEN_TYPE,
        requiredClaims: ["iss", "aud", "iat"],
      }));
    } catch (e) {
      const reason = e instanceof joseErrors.JOSEError ? e.code : "malformed";
      return invalid(`body trailer rejected (${reason})`);
    }
    const parsed = RelayTrailerPayloadSchema.safeParse(payload);
    if (!parsed.success) return invalid("body trailer claims incomplete");
    const t = parsed.data;
    if (t.rjt !== head.jti) return invalid("body trailer belongs to another relay");
    if (t.bln !== body.size || t.bsh !== body.sha256) return invalid("body differs from the signed trailer");
    return ok(undefined);
  }

  return {
    verify,
    verifyTrailer,
    async verifyRequest(request) {
      const token = request.headers.get(RELAY_HEADER);
      if (!token) return invalid(`missing ${RELAY_HEADER} header`);
      const body = request.body ? new Uint8Array(await request.clone().arrayBuffer()) : null;
      return verify({ token, method: request.method, path: relayPathOf(request.url), body });
    },
  };
}
