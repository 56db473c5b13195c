import { randomBytes } from "node:crypto";
import type { V1Lease } from "@kubernetes/client-node";
import type { Sandbox, SandboxNetwork } from "../../shared/api.ts";
import { microTimeString } from "../k8s/microtime.ts";
import { TENANT_ANNOTATION } from "./labels.ts";

/**
 * A sandbox lives entirely on its pod's Lease, so any replica can serve it and none owns it:
 * - `spec.holderIdentity` = `sandbox:<tenant>/<id>` (never an agent's id: no replica releases it);
 * - `spec.leaseDurationSeconds` = the idle timeout, `spec.renewTime` = the last activity (every use
 *   renews it by CAS): the leader's controller recycles it like any expired Lease;
 * - annotations carry the rest: id, name, creation time, absolute end of its max lifetime (the
 *   controller deletes it then, whatever its activity), last command, default env (sealed),
 *   network policy (plain: it names destinations, nothing secret), open port links (no tokens:
 *   the edge signs those; a link missing here is revoked).
 */
export const SANDBOX_ANNOTATIONS = {
  id: "pi-sandbox-runtime/sandbox-id",
  name: "pi-sandbox-runtime/sandbox-name",
  createdAt: "pi-sandbox-runtime/sandbox-created-at",
  lifetimeEndsAt: "pi-sandbox-runtime/sandbox-lifetime-ends-at",
  maxLifetimeSeconds: "pi-sandbox-runtime/sandbox-max-lifetime-seconds",
  lastCommand: "pi-sandbox-runtime/sandbox-last-command",
  env: "pi-sandbox-runtime/sandbox-env",
  /** The network policy `{allow, deny}` as JSON (not secret: it names destinations only). */
  network: "pi-sandbox-runtime/sandbox-network",
  /**
   * The tenant secrets the sandbox may use, name → its placeholder, as JSON. Not secret: a
   * placeholder is what the sandbox itself sees; the value stays in the tenant's Secret.
   */
  secrets: "pi-sandbox-runtime/sandbox-secrets",
  /** Open port links, JSON `{links: [{id, port, public, createdAt, expiresAt}]}` (sandboxes/port-links.ts). */
  links: "pi-sandbox-runtime/sandbox-links",
} as const;

const HOLDER_PREFIX = "sandbox:";

export const sandboxHolder = (tenant: string, id: string) => `${HOLDER_PREFIX}${tenant}/${id}`;

export function isSandboxLease(lease: V1Lease | undefined): boolean {
  return (lease?.spec?.holderIdentity ?? "").startsWith(HOLDER_PREFIX) && sandboxIdOf(lease) !== undefined;
}

export const sandboxIdOf = (lease: V1Lease | undefined): string | undefined =>
  lease?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.id];

/** A new id naming where the sandbox lives (see shared/api.ts SANDBOX_ID_PATTERN). */
export function mintSandboxId(region: string, cluster: string): string {
  return `sb.${region}.${cluster}.${randomLowerAlnum(20)}`;
}

/** `n` random characters of [a-z0-9] (ids that must be unguessable and fit a DNS label). */
export function randomLowerAlnum(n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let rand = "";
  for (const b of randomBytes(n)) rand += alphabet[b % alphabet.length];
  return rand;
}

/** True once the sandbox outlived `maxLifetimeSeconds` (read by the leader's controller). */
export function sandboxLifetimeOver(lease: V1Lease, nowMs: number): boolean {
  if (!isSandboxLease(lease)) return false;
  const ends = Date.parse(lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.lifetimeEndsAt] ?? "");
  return Number.isFinite(ends) && nowMs >= ends;
}

/** The sandbox's default env as stored: sealed (cluster-agent/sandboxes/env-seal.ts), never plain. */
export const sealedEnvOf = (lease: V1Lease): string | undefined =>
  lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.env] || undefined;

/**
 * The sandbox's network policy as stored: both lists (empty when the annotation is absent: no
 * network). An annotation that is not the stored shape reads as `undefined`, which callers treat
 * as no network at all (fail closed).
 */
export function sandboxNetworkOf(lease: V1Lease): SandboxNetwork | undefined {
  const raw = lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network];
  if (!raw) return { allow: [], deny: [] };
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== "object" || v === null) return undefined;
    const { allow = [], deny = [] } = v as { allow?: unknown; deny?: unknown };
    const strings = (l: unknown): l is string[] => Array.isArray(l) && l.every((x) => typeof x === "string");
    return strings(allow) && strings(deny) ? { allow, deny } : undefined;
  } catch {
    return undefined;
  }
}

/** The sandbox's secrets, name → placeholder (none when absent or unreadable: nothing is substituted). */
export function sandboxSecretsOf(lease: V1Lease): Map<string, string> {
  const raw = lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.secrets];
  if (!raw) return new Map();
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== "object" || v === null) return new Map();
    return new Map(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === "string"));
  } catch {
    return new Map();
  }
}

/** The annotation value for a network policy (absent lists stored as empty). */
export const networkAnnotation = (n: { allow?: string[]; deny?: string[] }): string =>
  JSON.stringify({ allow: n.allow ?? [], deny: n.deny ?? [] });

/** The public view of a sandbox Lease; undefined when the Lease is not (or no longer) a sandbox. */
export function sandboxView(
  lease: V1Lease,
  region: string,
): (Sandbox & { tenant: string; lastCommand?: string }) | undefined {
  if (!isSandboxLease(lease)) return undefined;
  const a = lease.metadata?.annotations ?? {};
  const id = a[SANDBOX_ANNOTATIONS.id] as string;
  const idle = lease.spec?.leaseDurationSeconds ?? 1;
  const createdAt = a[SANDBOX_ANNOTATIONS.createdAt] ?? new Date(0).toISOString();
  const last = microTimeString(lease.spec?.renewTime as Date | string | undefined) ?? createdAt;
  const lifetimeEnds = Date.parse(a[SANDBOX_ANNOTATIONS.lifetimeEndsAt] ?? "") || Number.POSITIVE_INFINITY;
  const idleEnds = Date.parse(last) + idle * 1000;
  const name = a[SANDBOX_ANNOTATIONS.name];
  const lastCommand = a[SANDBOX_ANNOTATIONS.lastCommand];
  return {
    id,
    ...(name ? { name } : {}),
    region,
    pod: lease.metadata?.name ?? "",
    state: "ready",
    createdAt,
    lastActivityAt: new Date(Date.parse(last)).toISOString(),
    expiresAt: new Date(Math.min(idleEnds, lifetimeEnds)).toISOString(),
    idleTimeoutSeconds: idle,
    maxLifetimeSeconds: Number(a[SANDBOX_ANNOTATIONS.maxLifetimeSeconds] ?? "0") || 1,
    tenant: a[TENANT_ANNOTATION] ?? "",
    ...(lastCommand ? { lastCommand } : {}),
  };
}
