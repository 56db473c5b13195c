import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  makeInformer,
} from "@kubernetes/client-node";

export type CacheChange<T> =
  | { type: "add"; obj: T }
  | { type: "update"; obj: T; old: T }
  | { type: "delete"; obj: T };

export interface WatchedCacheOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. `/apis/coordination.k8s.io/v1/namespaces/ns/leases`. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  /** Restart backoff after an informer error (client-node does not restart by itself). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (err: unknown, retryInMs: number) => void;
}

/** Decimal resourceVersions (etcd revisions) compare numerically; anything else counts as "not older". */
export function isOlderVersion(candidate: string | undefined, current: string | undefined): boolean {
  if (!candidate || !current) return false;
  if (!/^\d+$/.test(candidate) || !/^\d+$/.test(current)) return false;
  return BigInt(candidate) < BigInt(current);
}

/** Full jitter: a random delay in [base/2, base], base doubling per failure up to the cap. */
export function jitteredBackoff(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
) {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
  return Math.round(base / 2 + (random() * base) / 2);
}

/**
 * A watch-fed cache of one namespaced resource: a client-node informer restarted with jittered
 * backoff on every `error`, plus a map that our own write responses can also feed (`observe`), so
 * the cache never lags behind what this process itself just wrote and never goes back in version.
 */
export class WatchedCache<T extends KubernetesObject> {
  private readonly objects = new Map<string, T>();
  private readonly listeners = new Set<(c: CacheChange<T>) => void>();
  private readonly informer;
  private stopped = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private hasSynced = false;
  private syncWaiters: Array<() => void> = [];

  constructor(private readonly opts: WatchedCacheOptions<T>) {
    this.informer = makeInformer<T>(opts.kubeConfig, opts.path, opts.list, opts.labelSelector);
    this.informer.on("add", (o: T) => this.apply(o));
    this.informer.on("update", (o: T) => this.apply(o));
    this.informer.on("delete", (o: T) => this.remove(o));
    this.informer.on("error", (e: unknown) => this.scheduleRestart(e));
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  /** Starts the informer; resolves once the first list has landed (or the timeout passes: then `synced` stays false). */
  async start(timeoutMs = 10_000): Promise<boolean> {
    this.stopped = false;
    void this.runInformer();
    if (this.hasSynced) return true;
    return await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(this.hasSynced), timeoutMs);
      this.syncWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.informer.stop().catch(() => undefined);
  }

  get(name: string): T | undefined {
    return this.objects.get(name);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  /** Feed an object this process just read or wrote (never older than what we have). */
  observe(obj: T): void {
    this.apply(obj);
  }

  /** Drop an object this process just deleted (the watch's DELETED follows). */
  forget(name: string): void {
    const old = this.objects.get(name);
    if (old) this.remove(old);
  }

  onChange(listener: (c: CacheChange<T>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async runInformer(): Promise<void> {
    let failed = false;
    const onErr = () => {
      failed = true;
    };
    this.informer.on("error", onErr);
    try {
      await this.informer.start();
    } catch (e) {
      failed = true;
      this.scheduleRestart(e);
    } finally {
      this.informer.off("error", onErr);
    }
    if (!failed && !this.stopped) {
      this.failures = 0;
      if (!this.hasSynced) {
        this.hasSynced = true;
        const waiters = this.syncWaiters;
        this.syncWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private scheduleRestart(e: unknown): void {
    if (this.stopped || this.restartTimer) return;
    const delay = jitteredBackoff(
      this.failures++,
      this.opts.minBackoffMs ?? 200,
      this.opts.maxBackoffMs ?? 10_000,
    );
    this.opts.onError?.(e, delay);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped) void this.runInformer();
    }, delay);
  }

  private apply(obj: T): void {
    const name = obj.metadata?.name;
    if (!name) return;
    const old = this.objects.get(name);
    if (old) {
      if (old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
      if (isOlderVersion(obj.metadata?.resourceVersion, old.metadata?.resourceVersion)) return;
      // A recreated object (same name, new uid) replaces the old one regardless of versions.
      this.objects.set(name, obj);
      this.emit({ type: "update", obj, old });
    } else {
      this.objects.set(name, obj);
      this.emit({ type: "add", obj });
    }
  }

  private remove(obj: T): void {
    const name = obj.metadata?.name;
    if (!name) return;
    const old = this.objects.get(name);
    if (!old) return;
    // A DELETED for an older incarnation (other uid) must not drop the new one.
    if (old.metadata?.uid && obj.metadata?.uid && old.metadata.uid !== obj.metadata.uid) return;
    this.objects.delete(name);
    this.emit({ type: "delete", obj: old });
  }

  private emit(c: CacheChange<T>): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch {
        // A listener's bug must not stop the cache from updating the others.
      }
    }
  }
}
