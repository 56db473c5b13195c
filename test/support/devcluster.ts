import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { buildSandboxImage } from "../../cluster-agent/sandbox-server/build.ts";
import { type ApiServer, type AuditEntry, startApiServer } from "../../devcluster/apiserver/index.ts";
import { type DevCluster, type DevClusterOptions, startDevCluster } from "../../devcluster/devcluster.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import type { ImageSpec } from "../../devcluster/kubelet/index.ts";
import { type KubeletPki, makeKubeletPki } from "../../devcluster/pki.ts";

export const SANDBOX_REPO = "pi-sandbox-runtime/sandbox";
export const SANDBOX_IMAGE = `${SANDBOX_REPO}:dev`;

let imageDir: Promise<string> | undefined;

/** The sandbox "image", built once per test process into a temp dir (removed at exit). */
export function sandboxImages(): Promise<Record<string, ImageSpec>> {
  imageDir ??= mkdtemp(join(tmpdir(), "sandbox-image-")).then(async (dir) => {
    // "exit" handlers run synchronously: remove the image dir with the sync API.
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    return buildSandboxImage(dir);
  });
  return imageDir.then((dir) => ({
    [SANDBOX_REPO]: { binds: [{ host: dir, container: "/opt/sandbox-server" }] },
  }));
}

let pki: Promise<KubeletPki> | undefined;

/** One throw-away kubelet PKI per test process (CA, kubelet serving cert, API server client cert). */
export function testPki(nodeName = "test-node"): Promise<KubeletPki> {
  pki ??= mkdtemp(join(tmpdir(), "devcluster-pki-")).then((dir) => {
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    return makeKubeletPki(dir, nodeName);
  });
  return pki;
}

/** The API server side of `testPki()`: how it dials kubelets. */
export async function testKubeletClient(): Promise<{ cert: string; key: string; ca: string }> {
  const p = await testPki();
  return { cert: p.apiClientCert, key: p.apiClientKey, ca: p.ca };
}

/** The kubelet side of `testPki()`: its serving certificate and the CA of API server client certs. */
export async function testKubeletTls(): Promise<{ cert: string; key: string; clientCA: string }> {
  const p = await testPki();
  return { cert: p.kubeletCert, key: p.kubeletKey, clientCA: p.ca };
}

export type TestCluster = DevCluster & { dir: string };

/**
 * A devcluster in a fresh temp dir; `close()` stops it and removes the dir. Without `images`, the
 * real sandbox image is built and used.
 */
export async function startTestCluster(
  opts: Partial<Omit<DevClusterOptions, "dir">> & { images?: Record<string, ImageSpec> } = {},
): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), "devcluster-test-"));
  try {
    const images = opts.images ?? (await sandboxImages());
    const cluster = await startDevCluster({ ...opts, dir, images });
    return {
      ...cluster,
      dir,
      async close() {
        try {
          await cluster.close();
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface TestApiServer {
  url: string;
  token: string;
  api: ApiServer;
  audit: AuditEntry[];
  kubeConfig(): KubeConfig;
  /** Raw HTTP with the admin token; body objects are JSON-encoded, strings sent as they are. */
  raw(method: string, path: string, body?: unknown, contentType?: string): Promise<RawReply>;
  close(): Promise<void>;
}

export interface RawReply {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test helper: JSON bodies are inspected ad hoc
  json: any;
}

/** Only the API server (no kubelet), with namespaces `default` + `namespaces`, for API conformance tests. */
export async function startTestApiServer(
  opts: {
    namespaces?: string[];
    historySize?: number;
    stateFile?: string;
    port?: number;
    kubeletClient?: { cert: string; key: string; ca: string };
    bookmarkIntervalMs?: number;
    defaultWatchTimeoutMs?: number;
  } = {},
): Promise<TestApiServer> {
  const token = "test-admin-token";
  const audit: AuditEntry[] = [];
  const api = await startApiServer({
    tokens: { [token]: "admin" },
    kubeletClient: opts.kubeletClient ?? (await testKubeletClient()),
    audit: (e) => audit.push(e),
    historySize: opts.historySize,
    bookmarkIntervalMs: opts.bookmarkIntervalMs,
    defaultWatchTimeoutMs: opts.defaultWatchTimeoutMs,
    stateFile: opts.stateFile,
    port: opts.port,
  });
  const raw = async (method: string, path: string, body?: unknown, contentType = "application/json") => {
    const res = await fetch(api.url + path, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "Content-Type": contentType }),
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  };
  for (const ns of new Set(["default", ...(opts.namespaces ?? [])])) {
    const r = await raw("POST", "/api/v1/namespaces", { metadata: { name: ns } });
    if (r.status !== 201 && r.status !== 409) throw new Error(`namespace ${ns}: ${r.status} ${r.text}`);
  }
  return {
    url: api.url,
    token,
    api,
    audit,
    kubeConfig: () => makeKubeConfig({ server: api.url, token }),
    raw,
    close: () => api.close(),
  };
}
