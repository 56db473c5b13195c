import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { type ApiServer, type AuditEntry, startApiServer } from "./apiserver/index.ts";
import { type HttpsReply, httpsRequest } from "./https-request.ts";
import { makeKubeConfig, writeKubeconfig } from "./kubeconfig.ts";
import {
  type EgressProxyRoute,
  type ExecProtocol,
  type ImageSpec,
  type Kubelet,
  startKubelet,
} from "./kubelet/index.ts";
import { startKubeletProcess } from "./kubelet-process.ts";
import { makeKubeletPki } from "./pki.ts";
import { type Scheduler, startScheduler } from "./scheduler/scheduler.ts";

export interface DevClusterOptions {
  /** State (kubelet pods, optional API snapshot) and the kubeconfig live here. */
  dir: string;
  images: Record<string, ImageSpec>;
  /** Created in addition to `default`. */
  namespaces?: string[];
  /** API server port; 0/undefined = any free port. */
  port?: number;
  /** Extra bearer tokens (token → username), e.g. for an agent identity whose calls are audited. */
  tokens?: Record<string, string>;
  audit?: (e: AuditEntry) => void;
  /** Persist the API store here (survives an API server restart on the same port). */
  stateFile?: string;
  nodeName?: string;
  /** pids limit of every container (kubelet --pod-max-pids). Default 1024. */
  podPidsLimit?: number;
  /** The node's allocatable CPU and memory (quantities, e.g. "2", "500m", "4Gi"). Default: this machine's. */
  allocatable?: { cpu?: string; memory?: string };
  /** Exec subprotocols the kubelet offers (default v5, v4; `["v4.channel.k8s.io"]` = a pre-1.29 kubelet). */
  execProtocols?: ExecProtocol[];
  /** The egress proxy on the host that pods reach at 127.0.0.1:podPort (kubelet `egressProxy`). */
  egressProxy?: EgressProxyRoute;
  /** How often the kubelet measures emptyDirs against their sizeLimit (default 10 s; tests use less). */
  evictionIntervalMs?: number;
  /**
   * Run the kubelet in a process of its own (kubelet-process.ts), so its work does not hold the
   * API server's event loop during a burst of pod start-ups and its spawns fork a small process.
   * Default false (the kubelet in devcluster's own thread).
   */
  kubeletProcess?: boolean;
  log?: (msg: string) => void;
}

export interface DevCluster {
  /** `https://127.0.0.1:PORT`, served with a certificate from `ca`. */
  apiUrl: string;
  /** PEM of the cluster CA (also in the kubeconfig as `certificate-authority-data`). */
  ca: string;
  /** The admin bearer token (also in the kubeconfig). */
  token: string;
  /** One raw API request with the admin token (JSON body unless `contentType` says otherwise). */
  request(method: string, path: string, body?: unknown, contentType?: string): Promise<HttpsReply>;
  kubeconfigPath: string;
  kubeConfig(): KubeConfig;
  /** The current API server (a new object after `restartApi`). */
  readonly api: ApiServer;
  kubelet: Kubelet;
  /**
   * Stop the API server (clients see refused connections, watches end), run `whileDown`, then
   * start it again on the same port with the same tokens; with `stateFile` its objects survive.
   */
  restartApi(opts?: { whileDown?: () => Promise<void> }): Promise<void>;
  close(): Promise<void>;
}

export const ADMIN_USER = "devcluster-admin";
export const NODE_NAME = "devcluster-node";
export const SCHEDULER_USER = "system:kube-scheduler";

function token(): string {
  return randomBytes(24).toString("hex");
}

type Request = DevCluster["request"];

function requester(apiUrl: string, ca: string, adminToken: string): Request {
  return (method, path, body, contentType = "application/json") =>
    httpsRequest(apiUrl + path, {
      ca,
      method,
      headers: {
        Authorization: `Bearer ${adminToken}`,
        ...(body === undefined ? {} : { "Content-Type": contentType }),
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
}

async function createNamespace(request: Request, name: string): Promise<void> {
  const res = await request("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name },
  });
  // 409: already there (a restarted API server with a stateFile).
  if (res.status !== 201 && res.status !== 409) {
    throw new Error(`creating namespace ${name}: HTTP ${res.status} ${res.text}`);
  }
}

/** HTTPS API server + scheduler + process kubelet on 127.0.0.1, a kubeconfig in `dir`, namespaces created. */
export async function startDevCluster(opts: DevClusterOptions): Promise<DevCluster> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const adminToken = token();
  const nodeToken = token();
  const schedulerToken = token();
  const nodeName = opts.nodeName ?? NODE_NAME;
  const pki = await makeKubeletPki(join(dir, "pki"), nodeName);
  const apiOptions = {
    tokens: {
      ...opts.tokens,
      [adminToken]: ADMIN_USER,
      [nodeToken]: `system:node:${nodeName}`,
      [schedulerToken]: SCHEDULER_USER,
    },
    tls: { cert: pki.apiServerCert, key: pki.apiServerKey },
    kubeletClient: { cert: pki.apiClientCert, key: pki.apiClientKey, ca: pki.ca },
    audit: opts.audit,
    port: opts.port,
    stateFile: opts.stateFile,
  };
  let api = await startApiServer(apiOptions);
  const ca = pki.ca;
  const request = requester(api.url, ca, adminToken);
  let kubelet: Kubelet | undefined;
  let scheduler: Scheduler | undefined;
  try {
    for (const ns of new Set(["default", ...(opts.namespaces ?? [])])) await createNamespace(request, ns);
    const kubeconfigPath = join(dir, "kubeconfig");
    await writeKubeconfig(kubeconfigPath, { server: api.url, token: adminToken, user: ADMIN_USER, ca });
    const kubeletOptions = {
      nodeName,
      images: opts.images,
      stateDir: join(dir, "kubelet"),
      tls: { cert: pki.kubeletCert, key: pki.kubeletKey, clientCA: pki.ca },
      podPidsLimit: opts.podPidsLimit,
      allocatable: opts.allocatable,
      ...(opts.execProtocols ? { execProtocols: opts.execProtocols } : {}),
      ...(opts.egressProxy ? { egressProxy: opts.egressProxy } : {}),
      ...(opts.evictionIntervalMs ? { evictionIntervalMs: opts.evictionIntervalMs } : {}),
    };
    const kube = { server: api.url, token: nodeToken, user: `system:node:${nodeName}`, ca };
    kubelet = opts.kubeletProcess
      ? await startKubeletProcess({ ...kubeletOptions, kube }, opts.log)
      : await startKubelet({ ...kubeletOptions, kubeConfig: makeKubeConfig(kube), log: opts.log });
    scheduler = await startScheduler({
      kubeConfig: makeKubeConfig({ server: api.url, token: schedulerToken, user: SCHEDULER_USER, ca }),
      log: opts.log,
    });
    const kl = kubelet;
    const sched = scheduler;
    let closing: Promise<void> | undefined;
    const apiUrl = api.url;
    return {
      apiUrl,
      ca,
      token: adminToken,
      request,
      kubeconfigPath,
      kubeConfig: () => makeKubeConfig({ server: apiUrl, token: adminToken, user: ADMIN_USER, ca }),
      get api() {
        return api;
      },
      kubelet: kl,
      async restartApi(r = {}) {
        await api.close();
        await r.whileDown?.();
        api = await startApiServer({ ...apiOptions, port: Number(new URL(apiUrl).port) });
      },
      close() {
        // The kubelet first: it kills the sandboxes; the API server last, so it can still talk to it.
        closing ??= sched
          .close()
          .then(() => kl.close())
          .finally(() => api.close());
        return closing;
      },
    };
  } catch (err) {
    await scheduler?.close().catch(() => {});
    await kubelet?.close().catch(() => {});
    await api.close();
    throw err;
  }
}
