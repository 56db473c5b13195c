import { errors as joseErrors } from "jose";
import { AppError } from "./errors.ts";

/**
 * A failed JWT verification as our own error: a stable code (`token_expired` or `invalid_token`)
 * and a sentence in our words. jose's codes (`ERR_JWS_INVALID`, …) are its internals and change
 * with it; a caller never sees them. `what` names the token ("token", "agent token").
 */
export function tokenError(e: unknown, what = "token"): AppError {
  if (e instanceof joseErrors.JWTExpired) return new AppError("token_expired", `the ${what} has expired`);
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.reason === "missing") return new AppError("invalid_token", `the ${what} has no "${e.claim}" claim`);
    if (e.claim === "nbf") return new AppError("invalid_token", `the ${what} is not valid yet ("nbf")`);
    if (e.claim === "iat")
      return new AppError("invalid_token", `the ${what} was issued in the future ("iat")`);
    return new AppError("invalid_token", `the ${what}'s "${e.claim}" claim is not accepted here`);
  }
  if (e instanceof joseErrors.JWKSNoMatchingKey)
    return new AppError("invalid_token", `no known key matches the ${what}'s kid/alg`);
  if (e instanceof joseErrors.JWKSMultipleMatchingKeys)
    return new AppError("invalid_token", `the ${what}'s kid/alg matches more than one key`);
  if (e instanceof joseErrors.JWKSTimeout)
    return new AppError("invalid_token", "the key set is unavailable (timeout)");
  if (e instanceof joseErrors.JOSEAlgNotAllowed)
    return new AppError("invalid_token", `the ${what}'s algorithm is not allowed`);
  if (e instanceof joseErrors.JOSENotSupported)
    return new AppError("invalid_token", `the ${what}'s algorithm or key type is not supported`);
  if (e instanceof joseErrors.JWSSignatureVerificationFailed)
    return new AppError("invalid_token", `the ${what}'s signature does not verify`);
  return new AppError("invalid_token", `the ${what} is not a valid JWT`);
}
