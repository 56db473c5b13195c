import type { PoolEventInput } from "../../cluster-agent/events/bus.ts";
import {
  type PodSnapshot,
  type PoolSnapshot,
  PoolSnapshotSchema,
  type SandboxSnapshot,
} from "../../shared/api.ts";
import {
  type PoolEvent,
  type PoolEventBody,
  PoolEventBodySchema,
  PoolEventSchema,
  type PoolEventType,
} from "../../shared/events.ts";

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

const EGRESS_CONNECTION = {
  sandboxId: null,
  host: "pkgs.test",
  port: 443,
  mode: "tunnel",
  bytesUp: 0,
  bytesDown: 0,
  durationMs: 0,
} as const;

/** What the agent sends for each event type when a test does not care: a fixture gives only what it tests. */
const DEFAULT_DATA: { [T in PoolEventType]: (PoolEventBody & { type: T })["data"] } = {
  "secret.changed": { name: "API_KEY", change: "put" },
  "egress.allowed": EGRESS_CONNECTION,
  "egress.denied": { ...EGRESS_CONNECTION, reason: "egress_not_allowed" },
  "pod.created": {},
  "pod.ready": {},
  "pod.deleted": { phase: null, reason: "external" },
  "pod.failed": { reason: "Evicted", message: "", sandboxId: null },
  "pod.pids": { pidsMax: "1024", unlimited: false },
  "lease.acquired": { fence: 1, acquireMs: 1, queueMs: 0, queued: false, leaseDurationSeconds: 45 },
  "lease.renewed": { fence: 1, leaseDurationSeconds: 45 },
  "lease.released": { heldMs: 0, recycle: "none", fence: 1 },
  "lease.expired": { holder: null, fence: 1, recycle: "replace" },
  "lease.conflict": {},
  "lease.lost": { reason: "lease taken over", fence: 1 },
  "queue.entered": { position: 0, depth: 1, tenantAtCap: false },
  "queue.left": { reason: "served", waitedMs: 0, depth: 0 },
  "queue.timeout": { waitedMs: 15_000 },
  "exec.started": { commandPreview: "", queueMs: 0, mode: "http" },
  "exec.finished": { commandPreview: "", queueMs: 0, exitCode: 0, durationMs: 0, timedOut: false },
  "pool.leader": { leader: true, identity: "agent-a" },
  "pool.scale": {
    reason: "demand",
    create: 1,
    remove: 0,
    free: 0,
    held: 1,
    starting: 0,
    total: 1,
    wanted: 2,
    queued: 1,
    arrivalsPerSecond: 0,
  },
  "sandbox.created": {
    sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa",
    name: null,
    idleTimeoutSeconds: 300,
    expiresAt: "",
  },
  "sandbox.used": { sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa", what: "true" },
  "sandbox.deleted": { sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa" },
  "sandbox.expired": { sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa", reason: "idle" },
  "process.started": {
    sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa",
    pid: 42,
    commandPreview: "sleep 60",
    tty: false,
  },
  "process.exited": {
    sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa",
    pid: 42,
    commandPreview: "sleep 60",
    exitCode: 0,
    signal: null,
    timedOut: false,
    durationMs: 1,
  },
  "port_link.created": {
    sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa",
    linkId: "pl-aaaaaaaaaaaaaaaaaaaa",
    port: 8000,
    public: false,
    expiresAt: "2030-01-01T00:00:00.000Z",
  },
  "port_link.revoked": {
    sandboxId: "sb.local.default.aaaaaaaaaaaaaaaaaaaa",
    linkId: "pl-aaaaaaaaaaaaaaaaaaaa",
    port: 8000,
  },
};

/**
 * A real PoolEvent of `type`: `data` overrides the agent's usual fields for that type, and the
 * result is validated with the shared schema, so a fixture can only send what the agent sends.
 */
export function poolEvent(
  type: PoolEventType,
  fields: Partial<Omit<PoolEvent, "type" | "data">> = {},
  data: Record<string, unknown> = {},
): PoolEvent {
  const e = {
    type,
    at: new Date().toISOString(),
    agentId: "agent-a",
    region: "local",
    ...fields,
    data: { ...DEFAULT_DATA[type], ...data },
  };
  return PoolEventSchema.parse(e);
}

/** ISO time `ms` after `base` (agent clock). */
export const isoAfter = (base: string, ms: number) => new Date(Date.parse(base) + ms).toISOString();

/** A sandbox as an agent's snapshot lists it: acme's, on sandbox-1, last active at `at`, idle 300 s. */
export const sandboxSnapshot = (
  id: string,
  at: string,
  over: Partial<SandboxSnapshot> = {},
): SandboxSnapshot => ({
  id,
  pod: "sandbox-1",
  tenant: "acme",
  name: null,
  idleTimeoutSeconds: 300,
  lastActivityAt: at,
  expiresAt: isoAfter(at, 300_000),
  lastCommand: null,
  ...over,
});

/** What a test emits on a real EventBus: the agent's usual fields for the type, overridden by `data`. */
export function eventInput(input: {
  type: PoolEventType;
  data?: Record<string, unknown>;
  requestId?: string;
  tenant?: string;
  pod?: string;
}): PoolEventInput {
  const { type, data = {}, ...who } = input;
  return { ...who, ...PoolEventBodySchema.parse({ type, data: { ...DEFAULT_DATA[type], ...data } }) };
}
