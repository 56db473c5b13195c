import type { KubeConfig } from "@kubernetes/client-node";

/** What an "image" is in devcluster: host directories bound read-only into the sandbox. */
export interface ImageSpec {
  binds: Array<{ host: string; container: string }>;
}

export interface KubeletOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** Keyed by image repository without tag or digest. */
  images: Record<string, ImageSpec>;
  /** Per-pod state (logs) lives under `<stateDir>/pods/<uid>`; removed when the pod goes. */
  stateDir: string;
  /** First three octets of pod IPs; pods get `.2` … `.254`. Default "127.0.1". */
  podIPBase?: string;
  /** Bearer token the API server must present on exec. */
  kubeletToken: string;
  /** Upper bound on a pod's termination grace period (seconds). Default 5. */
  maxGraceSeconds?: number;
  log?: (msg: string) => void;
}

export interface Kubelet {
  /** `http://127.0.0.1:PORT`: the exec endpoint the API server proxies to. */
  endpoint: string;
  close(): Promise<void>;
}
