import type { KubeletClientTls } from "./exec-proxy.ts";
/** A JSON object as it travels on the wire and sits in the store. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** One API request as seen by the audit hook, with Kubernetes verbs. */
export interface AuditEntry {
  user: string;
  verb: "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";
  group: string;
  version: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  code: number;
}

export interface ApiServerOptions {
  /** token → username; any other bearer token (or none) gets 401. */
  tokens: Record<string, string>;
  /** `--kubelet-client-certificate/-key` and `--kubelet-certificate-authority`: how exec dials kubelets. */
  kubeletClient: KubeletClientTls;
  /** Serve HTTPS with this certificate (kubectl never sends a token over plain HTTP); plain HTTP without. */
  tls?: { cert: string; key: string };
  audit?: (e: AuditEntry) => void;
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** How many past events a watch can resume from; older resourceVersions get 410 Expired. */
  historySize?: number;
  /** Events older than this are removed (kube-apiserver's --event-ttl). Default 1 h. */
  eventTtlMs?: number;
  /** Interval of BOOKMARK events on watches that ask for them (allowWatchBookmarks=true). */
  bookmarkIntervalMs?: number;
  /** Lifetime of a watch without timeoutSeconds (default 30 min, like the real server's minimum). */
  defaultWatchTimeoutMs?: number;
  /** When set, the store is snapshotted here on every write and reloaded at start. */
  stateFile?: string;
}

/** A request as the latency fault hook sees it (before authentication, before its body is read). */
export interface RequestLine {
  method: string;
  /** Path and query, e.g. `/api/v1/namespaces/default/pods`. */
  path: string;
}

export interface ApiServer {
  /** `https://127.0.0.1:PORT` (or `http://` without `tls`). */
  url: string;
  /**
   * Fault hook for tests: each request waits the returned milliseconds before it is handled, as on
   * a loaded API server (the write lands late; a client that gave up may still find it done).
   * `undefined` removes the hook. Every plain request goes through it, watches too (the hook picks);
   * exec upgrades do not. A promise holds the request until it settles (a test's own event).
   */
  setLatency(fn: ((r: RequestLine) => number | Promise<unknown>) | undefined): void;
  close(): Promise<void>;
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function clone<T extends Json>(v: T): T {
  return structuredClone(v);
}
