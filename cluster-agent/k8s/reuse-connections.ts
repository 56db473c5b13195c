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
 * The settings are compared, not hashed: client-node re-reads the TLS files on every call, so a
 * digest per call cost a sha256 of the CA, certificate and key on every Lease write (~0.25 ms of
 * the agent's CPU per command in a profile); a byte comparison of a few KiB costs microseconds.
 * The dispatcher holds the same material, so keeping it for the comparison exposes nothing more.
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
  let current: { settings: Settings; dispatcher: unknown } | undefined;
  target.createDispatcher = ((cluster, agentOptions) => {
    const settings = settingsOf(cluster, agentOptions);
    if (current && sameSettings(current.settings, settings)) return current.dispatcher;
    const previous = current?.dispatcher as Partial<Closable> | undefined;
    current = { settings, dispatcher: create(cluster, agentOptions) };
    // Graceful: undici's close() lets the requests already on it finish.
    previous?.close?.().catch(() => {});
    return current.dispatcher;
  }) satisfies CreateDispatcher;
  target[PATCHED] = true;
  return kubeConfig;
}

/** Everything the dispatcher is built from, in a fixed order. */
type Settings = readonly unknown[];

function settingsOf(cluster: Cluster | null, o: AgentOptions): Settings {
  return [
    cluster?.server ?? null,
    cluster?.proxyUrl ?? null,
    o.ca ?? null,
    o.cert ?? null,
    o.key ?? null,
    o.pfx ?? null,
    o.passphrase ?? null,
    o.rejectUnauthorized ?? null,
    o.servername ?? null,
  ];
}

function sameSettings(a: Settings, b: Settings): boolean {
  return a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
}

/** Strings and primitives by value, Buffers by bytes, arrays (several CAs) element-wise. */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
  // Anything else (a key object with a passphrase, say) by its JSON form, as the digest did.
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null)
    return JSON.stringify(a) === JSON.stringify(b);
  return false;
}
