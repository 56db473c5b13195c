import { isNotFound, k8sFailure } from "../k8s/errors.ts";
import { type FailureLog, logFailure } from "./failure-log.ts";
import type { PoolStore } from "./pool-store.ts";

export interface DeletePodAndLeaseOptions {
  timeoutMs: number;
  log: FailureLog;
  /** Delete the Lease only if it is still at this version (the controller's expiry judgement). */
  leaseResourceVersion?: string | undefined;
  requestId?: string | undefined;
}

/**
 * Recycling by replacement, the one way both the lease manager and the pool controller do it.
 * Lease first: without its Lease a pod is never a candidate, so no replica can take it while it
 * is being deleted; and a conditional delete that loses (a renewal landed: the holder is alive)
 * leaves both in place. Then the pod; the controller brings a fresh one. A 404 is success.
 * Returns false when something was left behind (logged; the controller's next pass retries).
 */
export async function deletePodAndLease(
  store: PoolStore,
  name: string,
  o: DeletePodAndLeaseOptions,
): Promise<boolean> {
  const ctx = { requestId: o.requestId, pod: name };
  try {
    await store.deleteLease(name, o.timeoutMs, o.leaseResourceVersion);
  } catch (e) {
    if (!isNotFound(k8sFailure(e))) {
      logFailure(o.log, "delete lease failed; pod kept", e, ctx);
      return false;
    }
    store.leases.forget(name);
  }
  try {
    await store.deletePod(name, o.timeoutMs);
  } catch (e) {
    if (!isNotFound(k8sFailure(e))) {
      logFailure(o.log, "delete pod failed; left for the orphan rule", e, ctx);
      return false;
    }
  }
  return true;
}
