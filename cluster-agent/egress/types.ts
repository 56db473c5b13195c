import type { EgressPolicy } from "../../shared/egress-policy.ts";
import type { SecretValue } from "./secrets.ts";

/** A tenant's stored secret as the agent uses it (cluster-agent/secrets/): the value only behind `reveal()`. */
export interface StoredSecret {
  name: string;
  value: SecretValue;
  hosts: string[];
  header?: string;
  format?: string;
  updatedAt: string;
}

/** What the proxy knows about the sandbox behind a source address. */
export interface SandboxEgress {
  tenant: string;
  sandbox: string;
  policy: EgressPolicy;
  /** The values of the secrets `policy.secrets` names, with this sandbox's placeholder for each. */
  secrets?: ReadonlyMap<string, { placeholder: string; value: SecretValue }>;
}

/**
 * Source address (the pod IP as the proxy's socket sees it) → the sandbox there, or undefined.
 * The only way the proxy learns who is calling: never a header or anything else the sandbox sends.
 */
export type SandboxLookup = (
  sourceAddress: string,
) => SandboxEgress | undefined | Promise<SandboxEgress | undefined>;

/** Name → addresses. Injectable so tests map their fake internet's names without touching DNS. */
export type Resolver = (host: string) => Promise<string[]>;

/** How a refused or cut connection ended; stable, listed in README.md. */
export type EgressRefusal =
  | "egress_unknown_source"
  | "egress_not_allowed"
  | "egress_denied_by_rule"
  | "egress_forbidden_address"
  | "egress_bad_request"
  | "egress_connection_limit"
  | "egress_byte_limit"
  | "egress_resolve_failed"
  | "egress_connect_failed"
  | "egress_timeout"
  | "egress_upstream_tls"
  | "egress_misdirected"
  | "egress_sni_mismatch"
  | "egress_not_tls";

/** Why an allowed connection was closed by the proxy rather than by either end. */
export type EgressCut = "policy" | "identity" | "idle" | "shutdown" | "byte_limit";

/** One per connection (per proxied request for plain HTTP), emitted when it ends. No header or value ever. */
export interface EgressEvent {
  type: "egress";
  decision: "allowed" | "denied";
  source: string;
  tenant?: string;
  sandbox?: string;
  host: string;
  port: number;
  /** The address the proxy connected to (or refused). */
  address?: string;
  mode: "tunnel" | "intercept" | "http";
  reason?: EgressRefusal;
  message?: string;
  closedBy?: EgressCut;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

export type EgressSink = (event: EgressEvent) => void;
