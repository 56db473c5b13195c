import type { KubeConfig } from "@kubernetes/client-node";

/** The pods/exec WebSocket subprotocols devcluster's kubelet speaks (channel 3 carries a Status). */
export type ExecProtocol = "v5.channel.k8s.io" | "v4.channel.k8s.io";

/** What an "image" is in devcluster: host directories bound read-only into the container. */
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
  /** Serving certificate of the exec endpoint and the CA the API server's client certificate chains to. */
  tls: { cert: string; key: string; clientCA: string };
  /** pids cgroup limit of every container (kubelet --pod-max-pids). Default 1024. */
  podPidsLimit?: number;
  /**
   * The node's allocatable CPU and memory as quantities ("2", "1500m", "4Gi"), what the scheduler
   * fits pod requests into. Default: this machine's CPUs and memory (a kubelet with no reservations).
   */
  allocatable?: { cpu?: string; memory?: string };
  /**
   * Exec subprotocols the kubelet offers, best first (default v5 then v4). `["v4.channel.k8s.io"]`
   * is a kubelet before 1.29 (no stdin half-close), to test clients against one.
   */
  execProtocols?: ExecProtocol[];
  /**
   * The egress proxy on the host (`127.0.0.1:port`), as pods reach it: each pod's network
   * namespace gets a listener on `127.0.0.1:podPort` (default 3128) whose connections the kubelet
   * opens to the proxy from the pod's own IP, so the proxy knows which pod is calling. The one
   * way out of a pod; absent, a pod reaches nothing beyond its loopback.
   */
  egressProxy?: EgressProxyRoute;
  /**
   * How often disk-backed emptyDirs are measured against their `sizeLimit`; a pod over it is evicted
   * (Failed, reason `Evicted`) as a real kubelet's eviction manager does. Default 10 s, its period.
   */
  evictionIntervalMs?: number;
  /** Upper bound on a pod's termination grace period (seconds). Default 5. */
  maxGraceSeconds?: number;
  log?: (msg: string) => void;
}

export interface EgressProxyRoute {
  port: number;
  podPort?: number;
}

export interface Kubelet {
  /** `https://127.0.0.1:PORT`: the exec endpoint the API server proxies to. */
  endpoint: string;
  /** The kubelet's own process, when it runs in one (devcluster option `kubeletProcess`). */
  pid?: number | undefined;
  close(): Promise<void>;
}
