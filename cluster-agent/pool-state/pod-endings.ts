import { AppError } from "../../shared/errors.ts";
import { type Clock, systemClock } from "./clock.ts";
import { tenantOf } from "./lease-record.ts";
import { type PodFailure, podFailure } from "./pod-failure.ts";
import type { PoolStore } from "./pool-store.ts";
import { isSandboxLease, sandboxIdOf } from "./sandbox-record.ts";

export interface PodEnding extends PodFailure {
  pod: string;
  /** The failed pod's uid: a later pod of the same name is another pod. */
  uid?: string | undefined;
  /** The sandbox that lived on the pod, if one did. */
  sandbox?: { tenant: string; id: string } | undefined;
  /** When this replica saw it (its clock). */
  at: number;
}

export interface PodEndingsOptions {
  /** How long an ending is remembered after it was seen (default 10 minutes). */
  windowMs?: number;
  /** Most endings kept (the oldest go first; default 10,000). */
  maxEntries?: number;
  clock?: Clock;
}

/**
 * Pods that failed (evicted, OOM-killed, …) and the sandboxes that lived on them, remembered for a
 * while, so that a caller is told why instead of a bare `sandbox_not_found` once the controller has
 * recycled the pod. Every replica learns the same from its own pod and Lease watches. A watch may
 * deliver the sandbox Lease's deletion before its pod's failure (two resources, no order between
 * them), so the sandbox a deleted Lease named is remembered for the window too.
 */
export class PodEndings {
  private readonly byPod = new Map<string, PodEnding>();
  private readonly bySandbox = new Map<string, PodEnding>();
  /** The sandbox each recently deleted Lease named. */
  private readonly goneSandboxLeases = new Map<
    string,
    { tenant: string; id: string; podUid: string | undefined; at: number }
  >();
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly clock: Clock;
  private readonly off: Array<() => void> = [];

  constructor(
    private readonly store: Pick<PoolStore, "pods" | "leases">,
    o: PodEndingsOptions = {},
  ) {
    this.windowMs = o.windowMs ?? 10 * 60_000;
    this.maxEntries = o.maxEntries ?? 10_000;
    this.clock = o.clock ?? systemClock;
    this.off.push(
      store.pods.onChange((c) => {
        const failure = podFailure(c.obj);
        if (failure) this.record(c.obj.metadata?.name ?? "", failure, c.obj.metadata?.uid);
      }),
      store.leases.onChange((c) => {
        if (c.type !== "delete" || !isSandboxLease(c.obj)) return;
        const pod = c.obj.metadata?.name ?? "";
        const id = sandboxIdOf(c.obj) ?? "";
        // The Lease's owner reference names its pod's uid (the controller sets it).
        const podUid = c.obj.metadata?.ownerReferences?.find((r) => r.kind === "Pod")?.uid;
        this.goneSandboxLeases.set(pod, { tenant: tenantOf(c.obj) ?? "", id, podUid, at: this.clock.now() });
        // The pod's failure came first: now we know whose sandbox it ended.
        const ending = this.byPod.get(pod);
        if (ending && !ending.sandbox && (!podUid || !ending.uid || ending.uid === podUid))
          this.remember({ ...ending, sandbox: { tenant: tenantOf(c.obj) ?? "", id } });
        this.prune();
      }),
    );
  }

  stop(): void {
    for (const f of this.off.splice(0)) f();
  }

  /** Why `pod` failed: its cached status, else what was seen of it within the window. */
  ofPod(pod: string): PodEnding | undefined {
    const cached = this.store.pods.get(pod);
    const failure = podFailure(cached);
    if (failure) return this.record(pod, failure, cached?.metadata?.uid);
    this.prune();
    const seen = this.byPod.get(pod);
    // Names are random but may come again: a new pod under a failed one's name has not failed.
    return seen && (!cached || cached.metadata?.uid === seen.uid) ? seen : undefined;
  }

  /** Why the tenant's sandbox ended, if its pod failed within the window (another tenant's: never). */
  ofSandbox(tenant: string, id: string): PodEnding | undefined {
    this.prune();
    const e = this.bySandbox.get(id);
    return e?.sandbox?.tenant === tenant ? e : undefined;
  }

  /**
   * Why `pod` failed, waiting up to `ms` for its status to say so: a call that broke because its
   * pod was killed usually fails before the kubelet's status reaches us.
   */
  waitFor(pod: string, ms: number, signal?: AbortSignal): Promise<PodEnding | undefined> {
    const now = this.ofPod(pod);
    // Gone or being deleted without a failure: someone deleted it; its status will not say more.
    const cached = this.store.pods.get(pod);
    if (now || ms <= 0 || signal?.aborted || !cached || cached.metadata?.deletionTimestamp)
      return Promise.resolve(now);
    return new Promise((resolve) => {
      const done = (e: PodEnding | undefined) => {
        off();
        this.clock.clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(e);
      };
      const onAbort = () => done(undefined);
      const off = this.store.pods.onChange((c) => {
        if (c.obj.metadata?.name !== pod) return;
        const failure = podFailure(c.obj);
        if (failure) done(this.record(pod, failure, c.obj.metadata?.uid));
      });
      const timer = this.clock.setTimeout(() => done(this.byPod.get(pod)), ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private record(pod: string, failure: PodFailure, uid?: string): PodEnding {
    const known = this.byPod.get(pod);
    if (known && known.reason === failure.reason && known.message === failure.message) return known;
    const lease = this.store.leases.get(pod);
    const gone = this.goneSandboxLeases.get(pod);
    const podUid = uid ?? this.store.pods.get(pod)?.metadata?.uid;
    const sandbox = isSandboxLease(lease)
      ? { tenant: (lease && tenantOf(lease)) ?? "", id: sandboxIdOf(lease) ?? "" }
      : gone && (!gone.podUid || !podUid || gone.podUid === podUid)
        ? { tenant: gone.tenant, id: gone.id }
        : known?.sandbox;
    const ending: PodEnding = {
      ...failure,
      pod,
      uid: podUid ?? known?.uid,
      sandbox,
      at: known?.at ?? this.clock.now(),
    };
    this.remember(ending);
    this.prune();
    return ending;
  }

  private remember(e: PodEnding): void {
    this.byPod.delete(e.pod);
    this.byPod.set(e.pod, e);
    if (e.sandbox) {
      this.bySandbox.delete(e.sandbox.id);
      this.bySandbox.set(e.sandbox.id, e);
    }
  }

  private prune(): void {
    const oldest = this.clock.now() - this.windowMs;
    for (const map of [this.byPod, this.bySandbox, this.goneSandboxLeases] as Array<
      Map<string, { at: number }>
    >) {
      for (const [k, v] of map) {
        // Insertion order is age order (re-inserted on change): stop at the first one in the window.
        if (v.at >= oldest && map.size <= this.maxEntries) break;
        map.delete(k);
      }
    }
  }
}

/** The caller's error for a sandbox (or a one-shot request's pod) whose pod failed: the kubelet's reason and message. */
export function podEndedError(e: PodEnding): AppError {
  const what = e.sandbox
    ? `sandbox ${e.sandbox.id} is gone: its pod ${e.pod} failed`
    : `the pod ${e.pod} running this request failed`;
  return new AppError("sandbox_evicted", `${what} (${e.reason}): ${e.message}`.slice(0, 1000));
}
