import { createHash } from "node:crypto";
import type { AgentOptions } from "node:https";
import type { Cluster, KubeConfig } from "@kubernetes/client-node";

/** What client-node 2.0.1 calls per request to get the undici dispatcher of that request. */
type CreateDispatcher = (cluster: Cluster | null, agentOptions: AgentOptions) => unknown;
interface Closable {
  close(): Promise<void>;
}

const PATCHED = Symbol.for("pi-sandbox.reuse-connections");

/**
 * client-node 2.0.1 builds a new undici Agent for every API call to a cluster with any TLS setting
 * (a CA, a client certificate, or skipTLSVerify: every real cluster and devcluster), so no
 * connection is ever reused and each Lease compare-and-swap pays a TCP connect — and against a
 * real API server a TLS handshake with its round trips. This keeps one dispatcher per distinct set
 * of connection settings instead: the key covers the server, the proxy and the TLS material
 * itself, so a rotated client certificate or CA (re-read from its file on every call) gets a
 * fresh dispatcher, and the one it replaces closes once its requests are done.
 *
 * Patches the instance (the method is private in client-node's types); throws if client-node no
 * longer has it, so an upgrade that changes this fails at start, not silently.
 */
export function reuseConnections(kubeConfig: KubeConfig): KubeConfig {
  const target = kubeConfig as unknown as Record<PropertyKey, unknown>;
  if (target[PATCHED]) return kubeConfig;
  const original = target.createDispatcher;
  if (typeof original !== "function")
    throw new Error(
      "@kubernetes/client-node has no KubeConfig.createDispatcher: update reuse-connections.ts",
    );
  const create = (original as CreateDispatcher).bind(kubeConfig);
  let current: { key: string; dispatcher: unknown } | undefined;
  target.createDispatcher = ((cluster, agentOptions) => {
    const key = settingsKey(cluster, agentOptions);
    if (current?.key === key) return current.dispatcher;
    const previous = current?.dispatcher as Partial<Closable> | undefined;
    current = { key, dispatcher: create(cluster, agentOptions) };
    // Graceful: undici's close() lets the requests already on it finish.
    previous?.close?.().catch(() => {});
    return current.dispatcher;
  }) satisfies CreateDispatcher;
  target[PATCHED] = true;
  return kubeConfig;
}

/** Everything the dispatcher is built from; key material hashed, never kept in the key itself. */
function settingsKey(cluster: Cluster | null, o: AgentOptions): string {
  const digest = (v: unknown): string | null => {
    if (v === undefined || v === null) return null;
    const parts = Array.isArray(v) ? v : [v];
    const h = createHash("sha256");
    for (const p of parts) {
      if (typeof p === "string" || Buffer.isBuffer(p)) h.update(p);
      else h.update(JSON.stringify(p));
      h.update("\0");
    }
    return h.digest("hex");
  };
  return JSON.stringify([
    cluster?.server ?? null,
    cluster?.proxyUrl ?? null,
    digest(o.ca),
    digest(o.cert),
    digest(o.key),
    digest(o.pfx),
    digest(o.passphrase),
    o.rejectUnauthorized ?? null,
    o.servername ?? null,
  ]);
}
