// Prints fresh key material for one region: what goes into the edge (wrangler) and what goes into
// the cluster (Secret / ConfigMap). Usage: npx tsx k8s/keygen.ts <region> [cluster]
// With a cluster (the agent's CLUSTER_ID), the agent key is bound to it; without, to "default".
import { generateSigningKeyPair } from "../shared/jwt-keys.ts";
import { AGENT_KEY_CLUSTERS_MEMBER, isClusterName } from "../shared/tunnel.ts";

const region = process.argv[2];
const cluster = process.argv[3];
if (!region || !/^[a-z0-9-]+$/.test(region) || (cluster !== undefined && !isClusterName(cluster))) {
  process.stderr.write("usage: npx tsx k8s/keygen.ts <region> [cluster]\n");
  process.exit(2);
}
const stamp = `${new Date().toISOString().slice(0, 10)}-${Math.random().toString(16).slice(2, 6)}`;
const relay = await generateSigningKeyPair(`relay-${region}-${stamp}`);
const agent = await generateSigningKeyPair(`agent-${region}${cluster ? `-${cluster}` : ""}-${stamp}`);
const agentPublic = cluster
  ? { ...agent.publicJwk, [AGENT_KEY_CLUSTERS_MEMBER]: [cluster] }
  : agent.publicJwk;
const out = {
  region,
  edge: {
    "RELAY_PRIVATE_KEYS entry (wrangler secret)": { [region]: relay.privateJwk },
    "AGENT_PUBLIC_KEYS entry (wrangler var)": { [region]: { keys: [agentPublic] } },
  },
  cluster: {
    "agent-key (Secret pi-sandbox-agent)": JSON.stringify(agent.privateJwk),
    "jwks (ConfigMap pi-sandbox-relay-keys)": JSON.stringify({ keys: [relay.publicJwk] }),
  },
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
