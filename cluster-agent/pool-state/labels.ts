/** Labels every sandbox pod and its Lease carry; the pool leader Lease carries none of them. */
export const POOL_LABELS = {
  "app.kubernetes.io/name": "pi-sandbox",
  "app.kubernetes.io/managed-by": "pi-sandbox-runtime",
} as const;

export const POOL_LABEL_SELECTOR = Object.entries(POOL_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(",");

export const LEADER_LEASE_NAME = "pi-sandbox-pool-leader";
export const TENANT_ANNOTATION = "pi-sandbox-runtime/tenant";
export const REQUEST_ID_ANNOTATION = "pi-sandbox-runtime/request-id";
/**
 * The tenant a pod was scrubbed and kept for (RECYCLE=reuse-same-tenant). Set when a released pod
 * goes straight to a waiter of the same tenant, never removed: such a pod is handed on only to that
 * tenant or replaced, and is never freed for anyone else.
 */
export const KEPT_FOR_TENANT_ANNOTATION = "pi-sandbox-runtime/kept-for-tenant";
