import type { V1Lease, V1Pod } from "@kubernetes/client-node";
import type { CacheChange } from "../k8s/watched-cache.ts";

/** A watch-fed cache as its readers use it. */
export interface CacheView<T> {
  get(name: string): T | undefined;
  list(): T[];
  onChange(listener: (c: CacheChange<T>) => void): () => void;
  observe(obj: T): void;
  forget(name: string): void;
}

export interface DeletionCause {
  requestId?: string | undefined;
  tenant?: string | undefined;
  reason: string;
}

/**
 * Everything the lease core reads and writes of the pool: the cached pods and Leases, and the few
 * API writes, each bounded by a timeout and fed back into the cache. `PoolCaches` is the real one
 * (devcluster or a cluster behind it); unit specifications of the dispatch rules use an in-memory one.
 * Writes throw like client-node (`k8sFailure` reads the status code).
 */
export interface PoolStore {
  readonly pods: CacheView<V1Pod>;
  readonly leases: CacheView<V1Lease>;
  /** Compare-and-swap PUT: the body carries the resourceVersion it was read at. */
  replaceLease(body: V1Lease, timeoutMs: number, what: string): Promise<V1Lease>;
  readLease(name: string, timeoutMs: number): Promise<V1Lease>;
  deleteLease(name: string, timeoutMs: number, resourceVersion?: string): Promise<void>;
  deletePod(name: string, timeoutMs: number): Promise<void>;
  /** Remember why `pod` is being deleted, so its pod.deleted event names the request behind it. */
  attributeDeletion(pod: string, cause: DeletionCause): void;
}
