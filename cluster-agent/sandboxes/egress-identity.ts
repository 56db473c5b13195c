import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import { DENY_ALL, type EgressPolicy, parseEgressPolicy } from "../../shared/egress-policy.ts";
import type { SandboxEgress, SandboxLookup, StoredSecret } from "../egress/types.ts";
import { holderOf, isLeaseFree, requestIdOf, tenantOf } from "../pool-state/lease-record.ts";
import { isFinished } from "../pool-state/pod-state.ts";
import type { PoolStore } from "../pool-state/pool-store.ts";
import {
  SANDBOX_ANNOTATIONS,
  sandboxHolder,
  sandboxIdOf,
  sandboxNetworkOf,
  sandboxSecretsOf,
  sandboxView,
} from "../pool-state/sandbox-record.ts";

/** A tenant's stored secrets with their values (secrets/tenant-secrets.ts `values`). */
export type TenantSecretReader = (tenant: string) => Promise<ReadonlyMap<string, StoredSecret>>;

/**
 * A Lease's policy, compiled once per Lease object (one is replaced, never mutated, on every
 * change). Stored only after validation; anything unreadable, or opening every destination where
 * the deployment does not permit it (any more), is enforced as no network (fail closed).
 */
function policies(opts: { allowAnyHost: boolean }): (lease: V1Lease) => EgressPolicy {
  const compiled = new WeakMap<V1Lease, EgressPolicy>();
  return (lease) => {
    const cached = compiled.get(lease);
    if (cached) return cached;
    const network = sandboxNetworkOf(lease);
    const parsed = network ? parseEgressPolicy({ network }, opts) : undefined;
    const policy = parsed?.ok ? parsed.policy : DENY_ALL;
    compiled.set(lease, policy);
    return policy;
  };
}

const addressesOf = (pod: V1Pod): string[] =>
  [
    ...new Set([pod.status?.podIP, ...(pod.status?.podIPs ?? []).map((p) => p.ip)].filter((a) => !!a)),
  ] as string[];

/**
 * Who is behind a source address, for the egress proxy: the one live pool pod with that pod IP in
 * the watch-fed cache → its Lease (same name) → the sandbox holding it → that sandbox's policy as
 * the Lease has it now, or the call holding it with a `network` of its own (`oneCall`). Anything
 * else is nobody: a free pod, one held for a call without a policy, an address no pod has, or one two pods claim at once (an IP reused before the
 * old pod's deletion reached the cache) — the proxy then refuses with egress_unknown_source.
 * Never anything the sandbox sends.
 */
export function sandboxEgressLookup(
  store: Pick<PoolStore, "pods" | "leases">,
  region: string,
  secrets?: TenantSecretReader,
  /** EGRESS_ALLOW_ANY_HOST. */
  opts: { allowAnyHost: boolean } = { allowAnyHost: false },
): SandboxLookup {
  const policyOf = policies(opts);
  return (source: string) => {
    const pods = store.pods.list().filter((p) => !isFinished(p) && addressesOf(p).includes(source));
    if (pods.length !== 1) return undefined;
    const name = (pods[0] as V1Pod).metadata?.name;
    const lease = name ? store.leases.get(name) : undefined;
    if (!lease) return undefined;
    const view = sandboxView(lease, region);
    if (!view) return oneCall(lease, policyOf);
    if (!view.tenant || holderOf(lease) !== sandboxHolder(view.tenant, view.id)) return undefined;
    const base: SandboxEgress = { tenant: view.tenant, sandbox: view.id, policy: policyOf(lease) };
    const placeholders = sandboxSecretsOf(lease);
    return secrets && placeholders.size > 0 ? withSecrets(base, placeholders, secrets(view.tenant)) : base;
  };
}

/** Who the proxy counts a Lease's connections under (its `tenant`/`sandbox`), or undefined. */
export function egressSubjectOf(lease: V1Lease): { tenant: string; sandbox: string } | undefined {
  const id = sandboxIdOf(lease);
  const tenant = tenantOf(lease);
  if (!tenant) return undefined;
  if (id) return { tenant, sandbox: id };
  const requestId = requestIdOf(lease);
  return requestId ? { tenant, sandbox: `request:${requestId}` } : undefined;
}

/**
 * A pod held for one call (`POST /v1/exec`, a chat request) that brought a `network`: that call's
 * policy while it holds the pod. The policy is written with the claim and removed with the release
 * or hand-over (pool-state/lease-record.ts), so it never outlives the call; a free pod, or one held
 * without a policy, is nobody.
 */
function oneCall(lease: V1Lease, policyOf: (l: V1Lease) => EgressPolicy): SandboxEgress | undefined {
  const tenant = tenantOf(lease);
  const requestId = requestIdOf(lease);
  if (
    isLeaseFree(lease) ||
    !tenant ||
    !requestId ||
    !lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network]
  )
    return undefined;
  return { tenant, sandbox: `request:${requestId}`, policy: policyOf(lease) };
}

/**
 * The sandbox's policy with the secrets it opted in to, each bound as its tenant stored it now: a
 * secret deleted since is simply not there (its placeholder goes out as it is), and one whose
 * stored binding does not validate binds nothing (fail closed).
 */
async function withSecrets(
  base: SandboxEgress,
  placeholders: ReadonlyMap<string, string>,
  stored: Promise<ReadonlyMap<string, StoredSecret>>,
): Promise<SandboxEgress> {
  const values = await stored;
  const bound = [...placeholders].flatMap(([name, placeholder]) => {
    const s = values.get(name);
    return s ? [{ placeholder, s }] : [];
  });
  const parsed = parseEgressPolicy({
    secrets: bound.map(({ s }) => ({
      name: s.name,
      hosts: s.hosts,
      ...(s.header !== undefined ? { header: s.header } : {}),
      ...(s.format !== undefined ? { format: s.format } : {}),
    })),
  });
  if (!parsed.ok || bound.length === 0) return base;
  return {
    ...base,
    policy: { ...base.policy, secrets: parsed.policy.secrets },
    secrets: new Map(bound.map(({ placeholder, s }) => [s.name, { placeholder, value: s.value }])),
  };
}
