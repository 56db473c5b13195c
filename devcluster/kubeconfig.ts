import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { reuseConnections } from "../cluster-agent/k8s/reuse-connections.ts";

export interface KubeconfigSpec {
  server: string;
  token: string;
  user?: string;
  /** PEM CA of an `https://` server; without it (a plain-HTTP test API server) TLS checks are off. */
  ca?: string;
}

/**
 * A kubeconfig for the devcluster. With `ca` the server is verified as on a real cluster (kubectl
 * sends its token only over TLS); client-node also needs `insecure-skip-tls-verify` for plain http.
 */
export function kubeconfigYaml(spec: KubeconfigSpec): string {
  const user = spec.user ?? "devcluster-admin";
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: devcluster",
    "  cluster:",
    `    server: ${spec.server}`,
    spec.ca === undefined
      ? "    insecure-skip-tls-verify: true"
      : `    certificate-authority-data: ${Buffer.from(spec.ca).toString("base64")}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    token: ${spec.token}`,
    "contexts:",
    "- name: devcluster",
    "  context:",
    "    cluster: devcluster",
    `    user: ${user}`,
    "current-context: devcluster",
    "",
  ].join("\n");
}

export async function writeKubeconfig(path: string, spec: KubeconfigSpec): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, kubeconfigYaml(spec), { mode: 0o600 });
}

/**
 * A client-node KubeConfig for the devcluster, keeping its connections (client-node 2.0.1 alone
 * opens a new TLS connection per call: the kubelet's status patches and events, the scheduler's
 * bindings and every test's calls each paid a handshake on both ends).
 */
export function makeKubeConfig(spec: KubeconfigSpec): KubeConfig {
  const user = spec.user ?? "devcluster-admin";
  const kc = new KubeConfig();
  const tls =
    spec.ca === undefined
      ? { skipTLSVerify: true }
      : { skipTLSVerify: false, caData: Buffer.from(spec.ca).toString("base64") };
  kc.loadFromOptions({
    clusters: [{ name: "devcluster", server: spec.server, ...tls }],
    users: [{ name: user, token: spec.token }],
    contexts: [{ name: "devcluster", cluster: "devcluster", user }],
    currentContext: "devcluster",
  });
  return reuseConnections(kc);
}
