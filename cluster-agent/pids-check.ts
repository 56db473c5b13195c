import type { PoolSnapshot } from "../shared/api.ts";
import type { EventBus } from "./events/bus.ts";
import type { Executor } from "./exec/executor.ts";
import type { FailureLog } from "./pool-state/failure-log.ts";
import { transitionsOf } from "./pool-state/lease-record.ts";
import type { PoolStore } from "./pool-state/pool-store.ts";

export type SandboxPids = NonNullable<PoolSnapshot["sandboxPids"]>;

/** v2 first, then v1's pids controller; prints nothing when neither exists. */
const READ_PIDS_MAX =
  "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || true";
/** Pods tried before giving up (a pod taken or gone before the read is skipped for the next). */
const MAX_ATTEMPTS = 5;

/**
 * Checks once per agent whether sandbox pods have a process limit: the first pod that turns Ready
 * runs `cat pids.max` through the executor (either mode; before anyone holds it, under the fence its
 * Lease has now). "max" — no limit in the container's own cgroup — is one warn line, `pod.pids`
 * (metric `pi_sandbox_pod_pids_unlimited` 1) and `sandboxPids` in the pool snapshot. Without the
 * kubelet's `podPidsLimit` one sandbox can fork until the node runs out of pids.
 * What it cannot see: a container reads only its own cgroup (its cgroup namespace hides the
 * ancestors), and a kubelet applies `podPidsLimit` to the pod's cgroup one level up, while
 * containerd sets no container-level limit — so on such a node it reads "max" even with the limit
 * set. It is exact where the runtime limits the container (devcluster, CRI-O's `pids_limit`).
 */
export class PidsLimitCheck {
  private checked: SandboxPids | undefined;
  private running = false;
  private attempts = 0;
  private readonly off: () => void;
  /** Stopping aborts a read in flight; `stop()` waits for it, so no API call outlives the agent. */
  private readonly stopped = new AbortController();
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly o: {
      executor: Executor;
      store: Pick<PoolStore, "leases">;
      bus: EventBus;
      log: FailureLog & { info?(obj: object, msg: string): void };
      namespace: string;
      timeoutMs?: number;
    },
  ) {
    this.off = o.bus.onType(["pod.ready"], (e) => {
      if (e.type === "pod.ready" && e.pod && e.data.podIP) {
        const run = this.check(e.pod, e.data.podIP);
        this.inFlight = run;
        void run.finally(() => {
          if (this.inFlight === run) this.inFlight = undefined;
        });
      }
    });
  }

  /** The result, once a pod answered. */
  get result(): SandboxPids | undefined {
    return this.checked;
  }

  stop(): Promise<void> {
    this.off();
    this.stopped.abort();
    return this.inFlight ?? Promise.resolve();
  }

  private async check(pod: string, podIP: string): Promise<void> {
    if (this.checked || this.running || this.attempts >= MAX_ATTEMPTS || this.stopped.signal.aborted) return;
    const lease = this.o.store.leases.get(pod);
    if (!lease) return;
    this.running = true;
    this.attempts++;
    try {
      const r = await this.o.executor.exec(
        { namespace: this.o.namespace, pod, podIP, fence: transitionsOf(lease) },
        {
          command: READ_PIDS_MAX,
          timeoutMs: this.o.timeoutMs ?? 5_000,
          signal: AbortSignal.any([this.stopped.signal, AbortSignal.timeout(10_000)]),
        },
      );
      if (this.stopped.signal.aborted) return;
      if (!r.ok || r.value.exitCode !== 0) {
        this.o.log.warn(
          { pod, error: r.ok ? `exit ${r.value.exitCode}` : r.error.message },
          "reading a sandbox pod's pids.max failed; the next pod that turns Ready is tried",
        );
        return;
      }
      const raw = r.value.stdout.trim();
      const pidsMax = raw === "max" || /^\d+$/.test(raw) ? raw : null;
      const unlimited = pidsMax === "max";
      this.checked = { pidsMax, unlimited, pod, checkedAt: new Date().toISOString() };
      this.o.bus.emit({ type: "pod.pids", pod, data: { pidsMax, unlimited } });
      if (unlimited)
        this.o.log.warn(
          { pod, pidsMax },
          "sandbox pods have no process limit in their own cgroup (pids.max = max): unless the kubelet's podPidsLimit limits the pod's cgroup (a level the container cannot see), one sandbox can fork until the node runs out of pids; set podPidsLimit on sandbox nodes (k8s/README.md)",
        );
    } finally {
      this.running = false;
    }
  }
}
