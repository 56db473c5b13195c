import * as k8s from "@kubernetes/client-node";

export interface KubeClients {
  kubeConfig: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
}

/** A kubeconfig file when given (devcluster, a laptop), else the pod's in-cluster service account. */
export function loadKubeConfig(kubeconfigPath: string | undefined): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromCluster();
  return kc;
}

export function makeClients(kubeConfig: k8s.KubeConfig): KubeClients {
  return {
    kubeConfig,
    core: kubeConfig.makeApiClient(k8s.CoreV1Api),
    coordination: kubeConfig.makeApiClient(k8s.CoordinationV1Api),
  };
}
