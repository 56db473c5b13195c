// Runs inside the kubelet's worker thread (kubelet-thread.ts): starts the kubelet from plain data,
// sends its log lines and its endpoint to the parent, closes it when asked.
import { parentPort, workerData } from "node:worker_threads";
import { makeKubeConfig } from "./kubeconfig.ts";
import { type Kubelet, startKubelet } from "./kubelet/index.ts";
import type { KubeletThreadData, ToKubeletThread } from "./kubelet-thread.ts";

const port = parentPort;
if (!port) throw new Error("kubelet-thread-main.ts runs in a worker thread only");
const { kube, ...options } = workerData as KubeletThreadData;
let kubelet: Kubelet | undefined;
port.on("message", (m: ToKubeletThread) => {
  if (m.type !== "close") return;
  void (kubelet?.close() ?? Promise.resolve()).finally(() => port.postMessage({ type: "closed" }));
});
try {
  kubelet = await startKubelet({
    ...options,
    kubeConfig: makeKubeConfig(kube),
    log: (msg) => port.postMessage({ type: "log", msg }),
  });
  port.postMessage({ type: "ready", endpoint: kubelet.endpoint });
} catch (e) {
  port.postMessage({ type: "failed", message: e instanceof Error ? e.message : String(e) });
}
