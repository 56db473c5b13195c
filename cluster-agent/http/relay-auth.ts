import type { JSONWebKeySet, JWK } from "jose";
import type { Result } from "../../shared/errors.ts";
import {
  createRelayVerifier,
  type RelayClaims,
  type RelayVerifier,
  ReplayCache,
  relayAudience,
} from "../../shared/relay-signing.ts";

export interface RelayAuthOptions {
  region: string;
  /** The region's relay public keys (the edge signs with the private halves). */
  publicKeys: JSONWebKeySet | readonly JWK[];
  clockToleranceSeconds?: number;
  /** Most live relay jtis remembered (one per request in the last ~35 s). */
  replayCacheEntries?: number;
}

/**
 * The agent's check that a request really was relayed by the edge: signature, audience (this
 * region), expiry, replay, and that the token was signed for this very method, path and body.
 * Also usable as the `relay` dependency of the agent app (it is a RelayVerifier).
 */
export interface RelayAuth extends RelayVerifier {
  /** Verify a Request (its body stays readable); same as verifyRequest. */
  (request: Request): Promise<Result<RelayClaims>>;
}

export function createRelayAuth(opts: RelayAuthOptions): RelayAuth {
  const verifier = createRelayVerifier({
    publicKeys: opts.publicKeys,
    audience: relayAudience(opts.region),
    ...(opts.clockToleranceSeconds !== undefined
      ? { clockToleranceSeconds: opts.clockToleranceSeconds }
      : {}),
    replayCache: new ReplayCache({ maxEntries: opts.replayCacheEntries ?? 100_000 }),
  });
  const fn = ((request: Request) => verifier.verifyRequest(request)) as RelayAuth;
  fn.verify = verifier.verify;
  fn.verifyRequest = verifier.verifyRequest;
  fn.verifyTrailer = verifier.verifyTrailer;
  return fn;
}
