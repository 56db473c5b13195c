import { AppError } from "../../shared/errors.ts";
import { portLinkKey } from "../../shared/port-link-token.ts";
import type { EdgeConfig } from "../config.ts";

const keys = new Map<string, Promise<CryptoKey>>();

/**
 * A region's port-link key, derived from its relay key (shared/port-link-token.ts): rotating the
 * relay key ends every link of the region, which is what a key rotation is for.
 */
export function linkKeyFor(config: EdgeConfig, region: string): Promise<CryptoKey> {
  const jwk = config.relayPrivateKeys[region];
  if (!jwk?.d) return Promise.reject(new AppError("internal", `no relay key for region ${region}`));
  const id = `${region}:${jwk.kid ?? ""}:${jwk.x ?? ""}`;
  let key = keys.get(id);
  if (!key) {
    key = portLinkKey(jwk.d);
    keys.set(id, key);
  }
  return key;
}
