import { Worker } from "node:worker_threads";
import type { KubeconfigSpec } from "./kubeconfig.ts";
import type { Kubelet, KubeletOptions } from "./kubelet/index.ts";

/** What the thread gets: the kubelet's options as plain data (a KubeConfig and a function cannot cross). */
export type KubeletThreadData = Omit<KubeletOptions, "kubeConfig" | "log"> & { kube: KubeconfigSpec };
export type ToKubeletThread = { type: "close" };
type FromKubeletThread =
  | { type: "log"; msg: string }
  | { type: "ready"; endpoint: string }
  | { type: "failed"; message: string }
  | { type: "closed" };

const START_TIMEOUT_MS = 60_000;

/**
 * The kubelet on a worker thread of its own: its work (spawning runc and forwarders, splicing pod
 * connections, probes, status writes) runs on another event loop than the API server's, as on a
 * cluster where they are separate processes. A burst of pod start-ups then delays the API's
 * answers only by CPU, not by waiting for the kubelet's callbacks (`npm run bench -- elastic`
 * reports devcluster's event-loop delay during a burst). Same process: root, the pods' lock files
 * and `setpriv --pdeathsig` (tied to the thread that spawned them, which lives as long as the
 * kubelet) behave as before.
 */
export function startKubeletThread(data: KubeletThreadData, log?: (msg: string) => void): Promise<Kubelet> {
  const worker = new Worker(new URL("./kubelet-thread-entry.mjs", import.meta.url), { workerData: data });
  return new Promise<Kubelet>((resolve, reject) => {
    let closed: Promise<void> | undefined;
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`the kubelet thread did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    worker.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    worker.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the kubelet thread exited (${code}) before it was ready`));
    });
    worker.on("message", (m: FromKubeletThread) => {
      if (m.type === "log") log?.(m.msg);
      else if (m.type === "failed") {
        clearTimeout(timer);
        void worker.terminate();
        reject(new Error(m.message));
      } else if (m.type === "ready") {
        clearTimeout(timer);
        resolve({
          endpoint: m.endpoint,
          close() {
            closed ??= new Promise<void>((done) => {
              worker.once("exit", () => done());
              worker.on("message", (r: FromKubeletThread) => {
                if (r.type === "closed") void worker.terminate();
              });
              worker.postMessage({ type: "close" } satisfies ToKubeletThread);
            });
            return closed;
          },
        });
      }
    });
  });
}
