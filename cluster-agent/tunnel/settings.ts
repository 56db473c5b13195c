import { readFileSync } from "node:fs";
import type { JSONWebKeySet, JWK } from "jose";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { parseJwks } from "../../shared/jwt-keys.ts";

/**
 * What the agent needs to join the edge, from env vars (each key also as a *_FILE path, for
 * Kubernetes Secrets mounted as files):
 *   EDGE_URL                 https://edge.example.com (unset = no tunnel; the agent serves HTTP only)
 *   AGENT_PRIVATE_KEY        the region's agent Ed25519 private JWK (JSON)
 *   RELAY_PUBLIC_KEYS        the region's relay public key(s): a JWK or a JWKS (JSON)
 *   TUNNEL_HEARTBEAT_SECONDS heartbeat period (default 10)
 */
export interface TunnelSettings {
  edgeUrl: string;
  agentPrivateJwk: JWK;
  relayPublicKeys: JSONWebKeySet;
  heartbeatMs: number;
}

function value(env: Record<string, string | undefined>, name: string): string | undefined {
  const direct = env[name]?.trim();
  if (direct) return direct;
  const file = env[`${name}_FILE`]?.trim();
  return file ? readFileSync(file, "utf8").trim() : undefined;
}

/** null when EDGE_URL is not set; an error naming the bad variable otherwise. */
export function loadTunnelSettings(
  env: Record<string, string | undefined> = process.env,
): Result<TunnelSettings | null> {
  const bad = (m: string) => err(new AppError("invalid_request", `invalid tunnel configuration: ${m}`));
  try {
    const edgeUrl = value(env, "EDGE_URL");
    if (!edgeUrl) return ok(null);
    if (!/^(https?|wss?):\/\//.test(edgeUrl)) return bad("EDGE_URL must be http(s):// or ws(s)://");
    const keyText = value(env, "AGENT_PRIVATE_KEY");
    if (!keyText) return bad("AGENT_PRIVATE_KEY (or AGENT_PRIVATE_KEY_FILE) is required with EDGE_URL");
    const agentPrivateJwk = JSON.parse(keyText) as JWK;
    if (agentPrivateJwk.kty !== "OKP" || agentPrivateJwk.crv !== "Ed25519" || !agentPrivateJwk.d) {
      return bad("AGENT_PRIVATE_KEY must be an Ed25519 private JWK");
    }
    const relayText = value(env, "RELAY_PUBLIC_KEYS");
    if (!relayText) return bad("RELAY_PUBLIC_KEYS (or RELAY_PUBLIC_KEYS_FILE) is required with EDGE_URL");
    const relayPublicKeys = parseJwks(relayText);
    const hb = Number(env.TUNNEL_HEARTBEAT_SECONDS ?? "10");
    if (!(hb >= 1 && hb <= 300)) return bad("TUNNEL_HEARTBEAT_SECONDS must be 1..300");
    return ok({ edgeUrl, agentPrivateJwk, relayPublicKeys, heartbeatMs: hb * 1000 });
  } catch (e) {
    return bad(e instanceof Error ? e.message : String(e));
  }
}
