import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";

/** Why a pod stopped serving, as its status tells it (what `kubectl describe pod` shows). */
export interface PodFailure {
  /** The kubelet's reason: `Evicted`, `OOMKilled`, `Preempting`, `Error`, … */
  reason: string;
  /** The kubelet's message, e.g. `Usage of EmptyDir volume "workspace" exceeds the limit "256Mi".` */
  message: string;
}

/**
 * The failure a pod's status reports, or undefined while it is healthy (or merely being deleted:
 * a pod someone deletes is not a failure to explain, its sandbox is just gone).
 * In order: a pod-level reason on a Failed pod (a kubelet eviction writes phase Failed, reason
 * `Evicted` and the message), a container the kernel OOM-killed (a restarting one keeps it in
 * `lastState`), a `DisruptionTarget` condition (written before the kill on 1.26+), and last any
 * other Failed pod, by its container's termination.
 */
export function podFailure(pod: V1Pod | undefined): PodFailure | undefined {
  const s = pod?.status;
  if (!s) return undefined;
  if (s.phase === "Failed" && s.reason) return { reason: s.reason, message: s.message ?? s.reason };
  const containers = [...(s.initContainerStatuses ?? []), ...(s.containerStatuses ?? [])];
  for (const c of containers) {
    const t = terminated(c, "OOMKilled");
    if (t) {
      const limit = pod?.spec?.containers?.find((x) => x.name === c.name)?.resources?.limits?.memory;
      return {
        reason: "OOMKilled",
        message:
          t.message ||
          `container "${c.name}" was killed for using more memory than its limit${limit ? ` (${limit})` : ""}; exit code ${t.exitCode}`,
      };
    }
  }
  const disruption = (s.conditions ?? []).find((c) => c.type === "DisruptionTarget" && c.status === "True");
  if (disruption && !pod?.metadata?.deletionTimestamp)
    return { reason: disruption.reason ?? "DisruptionTarget", message: disruption.message ?? "" };
  if (s.phase !== "Failed" || pod?.metadata?.deletionTimestamp) return undefined;
  for (const c of containers) {
    const t = c.state?.terminated;
    if (t)
      return {
        reason: t.reason ?? "Failed",
        message: t.message || `container "${c.name}" exited with code ${t.exitCode}`,
      };
  }
  return { reason: "Failed", message: s.message ?? "the pod failed" };
}

function terminated(c: V1ContainerStatus, reason: string) {
  for (const t of [c.state?.terminated, c.lastState?.terminated]) if (t?.reason === reason) return t;
  return undefined;
}
