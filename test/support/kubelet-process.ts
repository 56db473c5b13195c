// A kubelet in its own process, for tests that kill it (SIGKILL) and check what it leaves behind.
// Config from env: KUBELET_API (server URL), KUBELET_TOKEN (API bearer), KUBELET_EXEC_TOKEN,
// KUBELET_NODE, KUBELET_STATE, KUBELET_IMAGES (JSON image map). Prints "ready <endpoint>".
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { startKubelet } from "../../devcluster/kubelet/index.ts";

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is required`);
  return v;
};

const kubelet = await startKubelet({
  kubeConfig: makeKubeConfig({ server: env("KUBELET_API"), token: env("KUBELET_TOKEN") }),
  nodeName: env("KUBELET_NODE"),
  images: JSON.parse(env("KUBELET_IMAGES")),
  stateDir: env("KUBELET_STATE"),
  kubeletToken: env("KUBELET_EXEC_TOKEN"),
});
process.stdout.write(`ready ${kubelet.endpoint}\n`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.once(sig, () => {
    void kubelet.close().finally(() => process.exit(0));
  });
}
