import { randomBytes } from "node:crypto";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { buildSandboxPod, loadPodTemplate } from "../../cluster-agent/pool/pod-template.ts";
import { startTestCluster } from "./devcluster.ts";

/**
 * A devcluster running real sandbox pods (the repository's pod template, the bundled exec server
 * as the image, each pod with its own exec token derived from `poolToken`, as the pool controller
 * builds it): what both executors are tested and measured against.
 */
export interface SandboxPodCluster {
  kubeConfig: KubeConfig;
  namespace: string;
  poolToken: string;
  /** Creates a sandbox pod and waits until it is Ready; returns its name and IP. */
  createPod(name: string): Promise<{ pod: string; podIP: string }>;
  deletePod(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startSandboxPodCluster(namespace = "sandbox-exec"): Promise<SandboxPodCluster> {
  // The real sandbox image, built once per process by the devcluster fixture.
  const dc = await startTestCluster({ namespaces: [namespace] });
  const kubeConfig = dc.kubeConfig();
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const poolToken = randomBytes(16).toString("hex");
  const loaded = loadPodTemplate(undefined);
  if (!loaded.ok) throw loaded.error;
  const template = loaded.value;

  return {
    kubeConfig,
    namespace,
    poolToken,
    async createPod(name) {
      const body = buildSandboxPod(template, {
        namespace,
        name,
        execToken: podExecToken(poolToken, namespace, name),
        image: template.spec?.containers[0]?.image ?? "pi-sandbox-runtime/sandbox:dev",
      });
      await core.createNamespacedPod({ namespace, body });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const pod = await core.readNamespacedPod({ name, namespace });
        const ready = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        if (ready && pod.status?.podIP) return { pod: name, podIP: pod.status.podIP };
        if (pod.status?.phase === "Failed")
          throw new Error(`sandbox pod ${name} failed: ${JSON.stringify(pod.status)}`);
        if (Date.now() > deadline)
          throw new Error(`sandbox pod ${name} not Ready in 30 s: ${JSON.stringify(pod.status)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async deletePod(name) {
      await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
    },
    close: () => dc.close(),
  };
}
