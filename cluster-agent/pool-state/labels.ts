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
