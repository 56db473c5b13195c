import * as k8s from "@kubernetes/client-node";
import { abortAfter } from "./deadline.ts";
import { reuseConnections } from "./reuse-connections.ts";

export interface KubeClients {
  kubeConfig: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
}

/** Bound on any API call that names no `deadline()` of its own (a call site that forgot one still ends). */
export const DEFAULT_CALL_TIMEOUT_MS = 15_000;

/** A kubeconfig file when given (devcluster, a laptop), else the pod's in-cluster service account. */
export function loadKubeConfig(kubeconfigPath: string | undefined): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromCluster();
  return kc;
}

export function makeClients(kubeConfig: k8s.KubeConfig): KubeClients {
  reuseConnections(kubeConfig);
  return {
    kubeConfig,
    core: new k8s.CoreV1Api(configuration(kubeConfig)),
    coordination: new k8s.CoordinationV1Api(configuration(kubeConfig)),
  };
}

/** What `kubeConfig.makeApiClient` builds, plus the default deadline (a per-call `deadline()` runs later and wins). */
function configuration(kubeConfig: k8s.KubeConfig): k8s.Configuration {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("kubeconfig has no current cluster");
  return k8s.createConfiguration({
    baseServer: new k8s.ServerConfiguration(cluster.server, {}),
    authMethods: { default: kubeConfig },
    middleware: [abortAfter(DEFAULT_CALL_TIMEOUT_MS)],
  });
}
