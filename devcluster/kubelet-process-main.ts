// Runs in the kubelet's own process (kubelet-process.ts): starts the kubelet from plain data sent
// over the IPC channel, sends its log lines and its endpoint back, closes it when asked — or when
// devcluster goes away (the channel closes).
import { makeKubeConfig } from "./kubeconfig.ts";
import { type Kubelet, startKubelet } from "./kubelet/index.ts";
import type { FromKubeletProcess, ToKubeletProcess } from "./kubelet-process.ts";

if (!process.send) throw new Error("kubelet-process-main.ts runs as devcluster's child, with an IPC channel");
const send = (m: FromKubeletProcess) => {
  if (process.connected) process.send?.(m);
};
let kubelet: Promise<Kubelet | undefined> | undefined;
let closing = false;
async function closeAndExit(): Promise<void> {
  if (closing) return;
  closing = true;
  await (await kubelet?.catch(() => undefined))?.close().catch(() => {});
  send({ type: "closed" });
  process.disconnect?.();
  process.exit(0);
}
process.on("message", (m: ToKubeletProcess) => {
  if (m.type === "close") void closeAndExit();
  else if (m.type === "start" && !kubelet) {
    const { kube, ...options } = m.data;
    kubelet = startKubelet({
      ...options,
      kubeConfig: makeKubeConfig(kube),
      log: (msg) => send({ type: "log", msg }),
    }).then(
      (k) => {
        send({ type: "ready", endpoint: k.endpoint });
        return k;
      },
      (e: unknown) => {
        send({ type: "failed", message: e instanceof Error ? e.message : String(e) });
        return undefined;
      },
    );
  }
});
process.on("disconnect", () => void closeAndExit());
