/**
 * The least environment the agent's loadConfig accepts: the relay public keys it must have and a
 * pool token (the default EXEC_MODE=http needs one). Tests that check other settings add theirs.
 */
export const TEST_RELAY_PUBLIC_KEYS = JSON.stringify({ keys: [{ kty: "OKP", crv: "Ed25519", x: "x" }] });

export const MIN_AGENT_ENV: Readonly<Record<string, string>> = {
  RELAY_PUBLIC_KEYS: TEST_RELAY_PUBLIC_KEYS,
  POOL_TOKEN: "test-pool-token",
};
