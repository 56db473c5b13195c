import { randomBytes } from "node:crypto";
import type { CoreV1Api, V1Pod } from "@kubernetes/client-node";

const API_TIMEOUT_MS = 10_000;

export interface PodEvent {
  type: "Normal" | "Warning";
  /** CamelCase, as the real components write them: Scheduled, FailedScheduling, Started, Killing, Evicted… */
  reason: string;
  message: string;
}

/**
 * Writes core/v1 Events about pods the way client-go's event recorder does (name `<pod>.<hex>`,
 * `source.component`, first/last timestamp, count 1), so `kubectl describe` and `kubectl get
 * events` show what the scheduler and the kubelet did. Best effort: a failed write is logged,
 * never thrown, as a real component never fails its work over an event.
 */
export function eventRecorder(
  core: CoreV1Api,
  source: { component: string; host?: string },
  log: (m: string) => void,
): (pod: V1Pod, e: PodEvent) => void {
  return (pod, e) => {
    const { name = "", namespace = "default", uid, resourceVersion } = pod.metadata ?? {};
    const now = new Date();
    const body = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: `${name}.${randomBytes(8).toString("hex")}`, namespace },
      involvedObject: { apiVersion: "v1", kind: "Pod", name, namespace, uid, resourceVersion },
      type: e.type,
      reason: e.reason,
      message: e.message,
      source: source.host === undefined ? { component: source.component } : source,
      reportingComponent: source.component,
      reportingInstance: source.host ?? "",
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const timeout = AbortSignal.timeout(API_TIMEOUT_MS);
    const created = core.createNamespacedEvent({ namespace, body });
    Promise.race([
      created,
      new Promise((_, reject) => timeout.addEventListener("abort", () => reject(new Error("timed out")))),
    ]).catch((err: unknown) => log(`event ${e.reason} for ${namespace}/${name}: ${(err as Error).message}`));
  };
}
