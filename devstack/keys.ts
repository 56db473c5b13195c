import type { JSONWebKeySet, JWK } from "jose";
import { generateSigningKeyPair } from "../shared/jwt-keys.ts";

/** Per region: the edge signs relays with `relay.private`, the agents log in with `agent.private`. */
export interface RegionKeys {
  relayPrivate: JWK;
  relayPublic: JSONWebKeySet;
  agentPrivate: JWK;
  agentPublic: JSONWebKeySet;
}

export async function generateRegionKeys(regions: readonly string[]): Promise<Record<string, RegionKeys>> {
  const out: Record<string, RegionKeys> = {};
  for (const region of regions) {
    const relay = await generateSigningKeyPair(`relay-${region}-1`);
    const agent = await generateSigningKeyPair(`agent-${region}-1`);
    out[region] = {
      relayPrivate: relay.privateJwk,
      relayPublic: { keys: [relay.publicJwk] },
      agentPrivate: agent.privateJwk,
      agentPublic: { keys: [agent.publicJwk] },
    };
  }
  return out;
}

/** The edge's vars for these regions (AGENT_PUBLIC_KEYS, RELAY_PRIVATE_KEYS), as wrangler.toml spells them. */
export function edgeKeyVars(keys: Record<string, RegionKeys>): Record<string, string> {
  const agentPublic: Record<string, JSONWebKeySet> = {};
  const relayPrivate: Record<string, JWK> = {};
  for (const [region, k] of Object.entries(keys)) {
    agentPublic[region] = k.agentPublic;
    relayPrivate[region] = k.relayPrivate;
  }
  return { AGENT_PUBLIC_KEYS: JSON.stringify(agentPublic), RELAY_PRIVATE_KEYS: JSON.stringify(relayPrivate) };
}
