import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { KubeconfigSpec } from "./kubeconfig.ts";
import type { Kubelet, KubeletOptions } from "./kubelet/index.ts";

/** What the process gets: the kubelet's options as plain data (a KubeConfig and a function cannot cross). */
export type KubeletProcessData = Omit<KubeletOptions, "kubeConfig" | "log"> & { kube: KubeconfigSpec };
export type ToKubeletProcess = { type: "start"; data: KubeletProcessData } | { type: "close" };
export type FromKubeletProcess =
  | { type: "log"; msg: string }
  | { type: "ready"; endpoint: string }
  | { type: "failed"; message: string }
  | { type: "closed" };

const START_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 30_000;

/**
 * The kubelet in a process of its own, as on a cluster: its work (spawning runc and forwarders,
 * splicing pod connections, probes, status writes) runs on another event loop than the API
 * server's, and its spawns fork a small process. Forking is what a spawn costs the parent, and it
 * grows with the parent's memory: from devcluster's process (the API server beside a stack's
 * harness, ~800 MB resident under the bench) one `runc run` cost the spawning thread ~10 ms of
 * system CPU and blocked it ~25 ms, twice per pod (runc, the port forwarder); from a kubelet of
 * its own (~230 MB), ~2.7 ms and ~7 ms. `setpriv --pdeathsig` ties it to devcluster (its pods'
 * runc processes are tied to it the same way), so a killed devcluster leaves no kubelet and no pod
 * behind.
 */
export function startKubeletProcess(data: KubeletProcessData, log?: (msg: string) => void): Promise<Kubelet> {
  const entry = fileURLToPath(new URL("./kubelet-process-entry.mjs", import.meta.url));
  const child = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", process.execPath, entry], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: process.env,
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return new Promise<Kubelet>((resolve, reject) => {
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Error(`the kubelet process did not start within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    child.once("error", (e) => fail(e));
    let closed: Promise<void> | undefined;
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      // After ready and unasked, this is a crash: say so (reject is a no-op then).
      if (!closed) log?.(`kubelet process exited (${signal ?? code}) unasked: its pods are gone`);
      reject(new Error(`the kubelet process exited (${signal ?? code}) before it was ready`));
    });
    child.on("message", (m: FromKubeletProcess) => {
      if (m.type === "log") log?.(m.msg);
      else if (m.type === "failed") fail(new Error(m.message));
      else if (m.type === "ready") {
        clearTimeout(timer);
        resolve({
          endpoint: m.endpoint,
          pid: child.pid,
          close() {
            closed ??= (async () => {
              if (child.exitCode !== null || child.signalCode !== null) return;
              const timeout = setTimeout(() => child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
              if (child.connected) child.send({ type: "close" } satisfies ToKubeletProcess);
              else child.kill("SIGTERM");
              await exited;
              clearTimeout(timeout);
            })();
            return closed;
          },
        });
      }
    });
    child.send({ type: "start", data } satisfies ToKubeletProcess);
  });
}
