import { createHash } from "node:crypto";
import type { V1Lease } from "@kubernetes/client-node";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";

/**
 * The authoritative count of a tenant's sandboxes across every replica: one Lease per tenant
 * (`pi-sandbox-tenant-<hash>`, never a holder — used as a counter, not a lock) whose annotation
 * lists the sandbox ids reserved, each with when it was reserved. A create reserves its id by
 * compare-and-swap BEFORE it takes a pod, so 30 concurrent creates on any number of replicas leave
 * at most the limit: counting live sandboxes from a cache cannot do that, because creates in flight
 * are not in it yet.
 *
 * Why a Lease: the agent already has RBAC for Leases in the sandbox namespace (no new verb, no new
 * resource), and resourceVersion gives the CAS. Why not the tenant's edge Durable Object: a sandbox
 * belongs to one cluster and the limit is per cluster; the count must sit where the pods are.
 *
 * The count heals itself, so no path has to be perfect: an entry whose sandbox does not exist (per
 * `isLive`, the watch-fed cache) and that is older than the grace is dropped at the next write. The
 * grace covers a create still in flight (reserved, not yet a sandbox Lease) and the watch's lag.
 * Deleting a sandbox releases its entry at once; an expired sandbox's entry goes by that rule.
 */

export const TENANT_RESERVATIONS_LABEL = { "pi-sandbox-runtime/role": "tenant-sandboxes" } as const;
const ENTRIES = "pi-sandbox-runtime/sandboxes";

export interface TenantReservationsOptions {
  clients: KubeClients;
  namespace: string;
  /** TENANT_MAX_SANDBOXES. */
  limit: number;
  /** Whether the sandbox exists now (the Lease cache): an entry of one that does not is stale. */
  isLive: (tenant: string, sandboxId: string) => boolean;
  /** An entry younger than this is kept even if its sandbox is not seen (default 120 s). */
  graceMs?: number;
  /** Per API call (default 5 s); the whole reservation gives up after 4 × this. */
  timeoutMs?: number;
  now?: () => number;
}

type Entries = Record<string, number>;

export function reservationLeaseName(tenant: string): string {
  // Tenant names are arbitrary strings; a Lease name is a DNS subdomain. A hash is both.
  return `pi-sandbox-tenant-${createHash("sha256").update(tenant).digest("hex").slice(0, 32)}`;
}

function entriesOf(lease: V1Lease | undefined): Entries {
  const raw = lease?.metadata?.annotations?.[ENTRIES];
  if (!raw) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    const out: Entries = {};
    for (const [id, at] of Object.entries(parsed)) if (typeof at === "number") out[id] = at;
    return out;
  } catch {
    // A corrupted counter is rebuilt from nothing: the live sandboxes re-enter it as they are seen.
    return {};
  }
}

/** What the sandbox service needs of the count (an in-memory one in unit tests). */
export interface SandboxReservations {
  reserve(tenant: string, sandboxId: string): Promise<Result<void>>;
  release(tenant: string, sandboxId: string): Promise<Result<void>>;
}

export class TenantReservations implements SandboxReservations {
  private readonly timeoutMs: number;
  private readonly graceMs: number;
  private readonly now: () => number;

  constructor(private readonly o: TenantReservationsOptions) {
    this.timeoutMs = o.timeoutMs ?? 5_000;
    this.graceMs = o.graceMs ?? 120_000;
    this.now = o.now ?? Date.now;
  }

  /** Reserves one of the tenant's places for `sandboxId`; `sandbox_limit` when all are taken. */
  async reserve(tenant: string, sandboxId: string): Promise<Result<void>> {
    return this.update(tenant, (entries) => {
      if (sandboxId in entries) return entries;
      if (Object.keys(entries).length >= this.o.limit) {
        return new AppError(
          "sandbox_limit",
          `tenant already has ${this.o.limit} sandboxes (TENANT_MAX_SANDBOXES), counting creates in flight`,
        );
      }
      return { ...entries, [sandboxId]: this.now() };
    });
  }

  /** Gives the place back (a create that failed, a delete). Best effort: a stale entry heals itself. */
  async release(tenant: string, sandboxId: string): Promise<Result<void>> {
    return this.update(tenant, (entries) => {
      if (!(sandboxId in entries)) return entries;
      const { [sandboxId]: _gone, ...rest } = entries;
      return rest;
    });
  }

  /** Read, prune stale entries, apply `change`, write by CAS; a conflict reads again. */
  private async update(tenant: string, change: (e: Entries) => Entries | AppError): Promise<Result<void>> {
    const name = reservationLeaseName(tenant);
    const giveUpAt = this.now() + 4 * this.timeoutMs;
    const api = this.o.clients.coordination;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        if (this.now() >= giveUpAt) {
          return err(new AppError("queue_timeout", "too many concurrent sandbox creates; retry"));
        }
        // Jitter spreads replicas that lost the same race.
        await new Promise((r) => setTimeout(r, 5 + Math.random() * Math.min(200, 10 * 2 ** attempt)));
      }
      let current: V1Lease | undefined;
      try {
        current = await api.readNamespacedLease(
          { name, namespace: this.o.namespace },
          deadline(this.timeoutMs),
        );
      } catch (e) {
        if (!isNotFound(k8sFailure(e))) return err(unavailable(e));
      }
      const before = this.prune(tenant, entriesOf(current));
      const after = change(before);
      if (after instanceof AppError) return err(after);
      if (current && sameKeys(after, entriesOf(current))) return ok(undefined);
      const annotations = { ...(current?.metadata?.annotations ?? {}), [ENTRIES]: JSON.stringify(after) };
      try {
        if (current) {
          await api.replaceNamespacedLease(
            {
              name,
              namespace: this.o.namespace,
              body: { ...current, metadata: { ...current.metadata, annotations } },
            },
            deadline(this.timeoutMs),
          );
        } else {
          await api.createNamespacedLease(
            {
              namespace: this.o.namespace,
              body: {
                apiVersion: "coordination.k8s.io/v1",
                kind: "Lease",
                metadata: {
                  name,
                  namespace: this.o.namespace,
                  labels: { ...TENANT_RESERVATIONS_LABEL },
                  annotations,
                },
                spec: {},
              },
            },
            deadline(this.timeoutMs),
          );
        }
        return ok(undefined);
      } catch (e) {
        // 409: another replica wrote first (or created it first): read again.
        if (!isConflict(k8sFailure(e))) return err(unavailable(e));
      }
    }
  }

  private prune(tenant: string, entries: Entries): Entries {
    const now = this.now();
    const out: Entries = {};
    for (const [id, at] of Object.entries(entries)) {
      if (now - at < this.graceMs || this.o.isLive(tenant, id)) out[id] = at;
    }
    return out;
  }
}

function sameKeys(a: Entries, b: Entries): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b);
}

/** The API server's words are the cause, for the caller's log line (with its request id), not the answer. */
function unavailable(e: unknown): AppError {
  return new AppError("sandbox_failed", "could not count the tenant's sandboxes", { cause: e });
}
