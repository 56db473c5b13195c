import {
  type PodSnapshot,
  type PoolEvent,
  PoolEventSchema,
  type PoolEventType,
  type PoolSnapshot,
  PoolSnapshotSchema,
} from "../../shared/api.ts";

/**
 * Real PoolSnapshot / PoolEvent objects for dashboard and telemetry tests, validated with the
 * shared schemas so a fixture can never drift from the wire contract.
 */

export function readyPod(name: string, i: number): PodSnapshot {
  return {
    name,
    state: "ready",
    podIP: `127.0.1.${i + 2}`,
    holder: null,
    acquiredAt: null,
    renewedAt: null,
    leaseDurationSeconds: 45,
    transitions: 0,
  };
}

export function poolSnapshot(over: Partial<PoolSnapshot> & { podCount?: number } = {}): PoolSnapshot {
  const { podCount = 8, ...rest } = over;
  const snapshot: PoolSnapshot = {
    region: "local",
    agentId: "agent-a",
    at: new Date().toISOString(),
    poolSize: podCount,
    recycle: "replace",
    pods: Array.from({ length: podCount }, (_, i) => readyPod(`pi-sandbox-${i}`, i)),
    queue: { depth: 0, waiters: [] },
    totals: { acquisitions: 0, conflicts: 0, queueTimeouts: 0, acquireP50Ms: null, acquireP99Ms: null },
    ...rest,
  };
  return PoolSnapshotSchema.parse(snapshot);
}

export function poolEvent(
  type: PoolEventType,
  fields: Omit<Partial<PoolEvent>, "type"> = {},
  data?: Record<string, unknown>,
): PoolEvent {
  const e: PoolEvent = { type, at: new Date().toISOString(), agentId: "agent-a", region: "local", ...fields };
  if (data !== undefined) e.data = data;
  return PoolEventSchema.parse(e);
}

/** ISO time `ms` after `base` (agent clock). */
export const isoAfter = (base: string, ms: number) => new Date(Date.parse(base) + ms).toISOString();
