import { importJWK, type JWK, SignJWT } from "jose";
import { type EdgeHarness, type EdgeOptions, startEdge as startDevEdge } from "../../devstack/edge.ts";
import {
  AGENT_PRIVATE_JWKS,
  RELAY_PUBLIC_JWKS,
  TENANT_ISSUER_PRIVATE_JWK,
  TEST_AUDIENCE,
  TEST_EDGE_VARS,
  TEST_ISSUER,
} from "../workers/fixtures/test-keys.ts";

export type { EdgeHarness };

/** The edge in workerd with the test keys (wrangler.toml has none); `opts.vars` override them. */
export function startEdge(opts: EdgeOptions = {}): Promise<EdgeHarness> {
  return startDevEdge({ ...opts, vars: { ...TEST_EDGE_VARS, ...opts.vars } });
}

/** A tenant JWT the harnessed edge accepts (test issuer key); `claims` override the defaults. */
export async function testTenantToken(claims: Record<string, unknown> = {}): Promise<string> {
  const key = await importJWK(TENANT_ISSUER_PRIVATE_JWK, "RS256");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: TEST_ISSUER,
    aud: TEST_AUDIENCE,
    sub: "test-user",
    iat: now,
    exp: now + 600,
    tenant: "tenant-test",
    scope: "sandbox:exec sandbox:chat sandbox:admin",
    ...claims,
  })
    .setProtectedHeader({ alg: "RS256", kid: TENANT_ISSUER_PRIVATE_JWK.kid! })
    .sign(key);
}

/** Keys an agent process needs to join the harnessed edge as `region` (eu-1 or us-1). */
export function testAgentKeys(region: string): { agentPrivateJwk: JWK; relayPublicKeys: { keys: JWK[] } } {
  const agentPrivateJwk = AGENT_PRIVATE_JWKS[region];
  const relayPublicKeys = RELAY_PUBLIC_JWKS[region];
  if (!agentPrivateJwk || !relayPublicKeys) throw new Error(`no test keys for region ${region}`);
  return { agentPrivateJwk, relayPublicKeys };
}
