// Prints fresh key material for one region: what goes into the edge (wrangler) and what goes into
// the cluster (Secret / ConfigMap). Usage: npx tsx k8s/keygen.ts <region>
import { generateSigningKeyPair } from "../shared/jwt-keys.ts";

const region = process.argv[2];
if (!region || !/^[a-z0-9-]+$/.test(region)) {
  process.stderr.write("usage: npx tsx k8s/keygen.ts <region>\n");
  process.exit(2);
}
const stamp = `${new Date().toISOString().slice(0, 10)}-${Math.random().toString(16).slice(2, 6)}`;
const relay = await generateSigningKeyPair(`relay-${region}-${stamp}`);
const agent = await generateSigningKeyPair(`agent-${region}-${stamp}`);
const out = {
  region,
  edge: {
    "RELAY_PRIVATE_KEYS entry (wrangler secret)": { [region]: relay.privateJwk },
    "AGENT_PUBLIC_KEYS entry (wrangler var)": { [region]: { keys: [agent.publicJwk] } },
  },
  cluster: {
    "agent-key (Secret pi-sandbox-agent)": JSON.stringify(agent.privateJwk),
    "jwks (ConfigMap pi-sandbox-relay-keys)": JSON.stringify({ keys: [relay.publicJwk] }),
  },
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
