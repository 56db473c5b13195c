import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";

export interface KubeconfigSpec {
  server: string;
  token: string;
  user?: string;
}

/** A kubeconfig for the devcluster: plain http needs `insecure-skip-tls-verify` for client-node. */
export function kubeconfigYaml(spec: KubeconfigSpec): string {
  const user = spec.user ?? "devcluster-admin";
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: devcluster",
    "  cluster:",
    `    server: ${spec.server}`,
    "    insecure-skip-tls-verify: true",
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

export function makeKubeConfig(spec: KubeconfigSpec): KubeConfig {
  const user = spec.user ?? "devcluster-admin";
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "devcluster", server: spec.server, skipTLSVerify: true }],
    users: [{ name: user, token: spec.token }],
    contexts: [{ name: "devcluster", cluster: "devcluster", user }],
    currentContext: "devcluster",
  });
  return kc;
}
