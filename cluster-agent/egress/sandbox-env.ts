import { RESERVED_ENV_NAMES } from "../../shared/egress-policy.ts";

export interface SandboxEnvOptions {
  /** The proxy as the sandbox reaches it, e.g. `http://10.0.0.7:3128`. */
  proxyUrl: string;
  /** A bundle of the usual public roots plus the cluster CA (tools that replace their store read it). */
  caBundleFile?: string;
  /** Secret name → this sandbox's placeholder. */
  placeholders?: ReadonlyMap<string, string>;
  /** Hosts the sandbox reaches without the proxy (only itself: nothing else is reachable). */
  noProxy?: readonly string[];
}

/**
 * The variables each tool that verifies TLS reads for its trust store: OpenSSL's default
 * (SSL_CERT_FILE: curl built on OpenSSL, Python's ssl, git), curl's own, Node's extra roots,
 * requests, pip and git. All point at one bundle of the public roots plus the cluster CA.
 */
export function caBundleEnv(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
  ])
    env[name] = file;
  return env;
}

/**
 * The environment that makes a sandbox's tools use the egress proxy unchanged: curl, pip, npm and
 * git read the proxy variables (curl reads `http_proxy` only in lower case), Node's fetch and http
 * need NODE_USE_ENV_PROXY=1 (Node ≥ 24.5), and each CA variable points the tool that reads it at a
 * bundle that also trusts the cluster CA (for hosts a secret is bound to). A secret appears only
 * as its placeholder.
 */
export function sandboxProxyEnv(o: SandboxEnvOptions): Record<string, string> {
  const noProxy = (o.noProxy ?? ["localhost", "127.0.0.1", "::1"]).join(",");
  const env: Record<string, string> = {
    HTTP_PROXY: o.proxyUrl,
    HTTPS_PROXY: o.proxyUrl,
    http_proxy: o.proxyUrl,
    https_proxy: o.proxyUrl,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    NODE_USE_ENV_PROXY: "1",
  };
  if (o.caBundleFile) Object.assign(env, caBundleEnv(o.caBundleFile));
  for (const [name, placeholder] of o.placeholders ?? []) {
    if (RESERVED_ENV_NAMES.includes(name.toUpperCase())) throw new Error(`secret name ${name} is reserved`);
    env[name] = placeholder;
  }
  return env;
}
