// A kubelet in its own process, for tests that kill it (SIGKILL) and check what it leaves behind.
// Config from env: KUBELET_API (server URL), KUBELET_TOKEN (API bearer),
// KUBELET_NODE, KUBELET_STATE, KUBELET_IMAGES (JSON image map). Prints "ready <endpoint>".
// Its exec endpoint uses this process's own test PKI (the crash test never execs).
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { startKubelet } from "../../devcluster/kubelet/index.ts";
import { testKubeletTls } from "./devcluster.ts";

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
  tls: await testKubeletTls(),
});
process.stdout.write(`ready ${kubelet.endpoint}\n`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.once(sig, () => {
    void kubelet.close().finally(() => process.exit(0));
  });
}
