import { z } from "zod";

/*
 * The pool's event stream, one schema for its one writer (the agent's EventBus) and every reader
 * (the agent's metrics, its SSE stream, the edge's merge of agents' streams, the dashboard
 * reducer). Each event type names exactly the fields of its `data`; a reader can use only what the
 * writer sends, and the type checker proves it. To add an event: add its schema to the union below.
 */

const fence = z.number().int().nonnegative();
const ms = z.number().nonnegative();

const podCreated = z.object({
  type: z.literal("pod.created"),
  data: z.object({ uid: z.string().optional() }),
});
const podReady = z.object({ type: z.literal("pod.ready"), data: z.object({ podIP: z.string().optional() }) });
const podDeleted = z.object({
  type: z.literal("pod.deleted"),
  /** reason: why the agent deleted it ("recycle replace", "lease expired", …) or "external". */
  data: z.object({ phase: z.string().nullable(), reason: z.string() }),
});
/**
 * A pod failed (evicted, OOM-killed, …), as its status says; emitted by the pool leader when it
 * recycles the pod. reason/message: the kubelet's; sandboxId: the sandbox that lived on it.
 */
const podFailed = z.object({
  type: z.literal("pod.failed"),
  data: z.object({ reason: z.string(), message: z.string(), sandboxId: z.string().nullable() }),
});
/**
 * The pids limit a sandbox pod sees in its own cgroup (`pids.max`: a number, or "max" = none; null
 * when the pod has no pids controller file), read once per agent from the first pod that turns
 * Ready. Unlimited means one sandbox can fork without bound unless the node's kubelet sets
 * `podPidsLimit`.
 */
const podPids = z.object({
  type: z.literal("pod.pids"),
  data: z.object({ pidsMax: z.string().nullable(), unlimited: z.boolean() }),
});
const leaseAcquired = z.object({
  type: z.literal("lease.acquired"),
  data: z.object({
    fence,
    /** From the acquire call to the won compare-and-swap (includes queueing). */
    acquireMs: ms,
    queueMs: ms,
    /** The request waited in the queue first. */
    queued: z.boolean(),
    leaseDurationSeconds: z.number().int().positive(),
    resourceVersion: z.string().optional(),
  }),
});
const leaseRenewed = z.object({
  type: z.literal("lease.renewed"),
  data: z.object({ fence, leaseDurationSeconds: z.number().int().positive() }),
});
export const RecycleSchema = z.enum(["none", "scrub", "replace"]);
const leaseReleased = z.object({
  type: z.literal("lease.released"),
  data: z.object({
    heldMs: ms,
    /** When the holder stopped using the pod: every later holder's acquisition comes after it. */
    usedUntil: z.string().optional(),
    /** none: freed untouched (unused) or not ours any more (lost); scrub: reset and freed; replace: deleted. */
    recycle: RecycleSchema,
    fence,
    lost: z.literal(true).optional(),
    unused: z.literal(true).optional(),
    killed: z.number().int().nonnegative().optional(),
    removed: z.number().int().nonnegative().optional(),
    scrubFailed: z.string().optional(),
    /** RECYCLE=reuse-same-tenant: the request of the same tenant the scrubbed pod went straight to. */
    handedTo: z.string().optional(),
  }),
});
const leaseExpired = z.object({
  type: z.literal("lease.expired"),
  data: z.object({ holder: z.string().nullable(), fence, recycle: z.literal("replace") }),
});
const leaseConflict = z.object({
  type: z.literal("lease.conflict"),
  data: z.object({ resourceVersion: z.string().optional() }),
});
const leaseLost = z.object({
  type: z.literal("lease.lost"),
  data: z.object({ reason: z.string(), fence, holder: z.string().nullable().optional() }),
});
const queueEntered = z.object({
  type: z.literal("queue.entered"),
  data: z.object({
    position: z.number().int().nonnegative(),
    depth: z.number().int().nonnegative(),
    tenantAtCap: z.boolean(),
  }),
});
export const QueueLeftReasonSchema = z.enum(["served", "aborted", "timeout", "shutdown"]);
const queueLeft = z.object({
  type: z.literal("queue.left"),
  data: z.object({ reason: QueueLeftReasonSchema, waitedMs: ms, depth: z.number().int().nonnegative() }),
});
const queueTimeout = z.object({ type: z.literal("queue.timeout"), data: z.object({ waitedMs: ms }) });
const execCommon = {
  /** The command's first line, bounded (the agent shortens it). */
  commandPreview: z.string(),
  queueMs: ms,
  /** Set when the command ran in a sandbox that lives across requests (POST /v1/sandboxes/:id/exec). */
  sandboxId: z.string().optional(),
};
const execStarted = z.object({
  type: z.literal("exec.started"),
  data: z.object({ ...execCommon, mode: z.enum(["http", "api", "pydantic-http"]) }),
});
const execFinished = z.object({
  type: z.literal("exec.finished"),
  data: z.object({
    ...execCommon,
    exitCode: z.number().int().nullable(),
    durationMs: ms,
    timedOut: z.boolean(),
    /** The error code when the command did not produce a result. */
    error: z.string().optional(),
  }),
});
const poolLeader = z.object({
  type: z.literal("pool.leader"),
  /** leader: whether `identity` (the emitting agent) leads now; false when it stepped down. */
  data: z.object({ leader: z.boolean(), identity: z.string() }),
});
const poolScale = z.object({
  type: z.literal("pool.scale"),
  /**
   * A scale decision of the leader's controller (emitted when it creates or removes pods, or its
   * reason changes): counts as it saw them, and why. `refusal` is the API's answer to a refused
   * create (quota exceeded, 403, 422) while it backs off for `backoffMs`.
   */
  data: z.object({
    reason: z.enum([
      "steady",
      "warm target",
      "demand",
      "max pods",
      "create rate",
      "start limit",
      "leader budget",
      "backoff",
      "scale down",
      "low demand",
      "unschedulable",
      "create refused",
    ]),
    create: z.number().int().nonnegative(),
    remove: z.number().int().nonnegative(),
    free: z.number().int().nonnegative(),
    held: z.number().int().nonnegative(),
    starting: z.number().int().nonnegative(),
    /** Of `starting`: pods no node has room for (`PodScheduled=False/Unschedulable`); growth waits for them. */
    unschedulable: z.number().int().nonnegative().optional(),
    total: z.number().int().nonnegative(),
    wanted: z.number().int().nonnegative(),
    queued: z.number().int().nonnegative(),
    arrivalsPerSecond: z.number().nonnegative(),
    backoffMs: ms.optional(),
    refusal: z.string().optional(),
  }),
});
const sandboxCreated = z.object({
  type: z.literal("sandbox.created"),
  data: z.object({
    sandboxId: z.string(),
    name: z.string().nullable(),
    idleTimeoutSeconds: z.number().int().positive(),
    expiresAt: z.string(),
  }),
});
const sandboxUsed = z.object({
  type: z.literal("sandbox.used"),
  /** what: the command's preview or the file operation (`write <path>`, `read <path>`, `delete <path>`). */
  data: z.object({ sandboxId: z.string(), what: z.string() }),
});
const sandboxDeleted = z.object({
  type: z.literal("sandbox.deleted"),
  data: z.object({ sandboxId: z.string() }),
});
const sandboxExpired = z.object({
  type: z.literal("sandbox.expired"),
  /** "pod failed": its pod was evicted or OOM-killed (the pod.failed event says how). */
  data: z.object({ sandboxId: z.string(), reason: z.enum(["idle", "max lifetime", "pod failed"]) }),
});

/** A tenant secret stored or deleted (/v1/secrets): its name only, never its value or bindings. */
const secretChanged = z.object({
  type: z.literal("secret.changed"),
  data: z.object({ name: z.string(), change: z.enum(["put", "delete"]) }),
});
const egressCommon = {
  /** The sandbox behind the connection; null when the proxy could not tell (egress_unknown_source). */
  sandboxId: z.string().nullable(),
  host: z.string(),
  port: z.number().int().nonnegative(),
  /** tunnel: spliced CONNECT; intercept: TLS terminated to add a secret; http: plain HTTP. */
  mode: z.enum(["tunnel", "intercept", "http"]),
  bytesUp: z.number().nonnegative(),
  bytesDown: z.number().nonnegative(),
  durationMs: ms,
};
/** A connection through the egress proxy that was allowed, once it ended (closedBy: the proxy cut it). */
const egressAllowed = z.object({
  type: z.literal("egress.allowed"),
  data: z.object({ ...egressCommon, closedBy: z.string().optional() }),
});
/** A connection the egress proxy refused or failed: `reason` is a code of README's egress table. */
const egressDenied = z.object({
  type: z.literal("egress.denied"),
  data: z.object({ ...egressCommon, reason: z.string(), message: z.string().optional() }),
});
const processCommon = {
  /** The sandbox it runs in; null on a chat request's own pod (it ends with the request). */
  sandboxId: z.string().nullable(),
  /** The process id inside the pod (the API's `pid`). */
  pid: z.number().int().positive(),
  /** Its command's first line, bounded, or its argv joined. */
  commandPreview: z.string(),
};
/** A long-lived process was started (POST …/processes or a model's start_process). */
const processStarted = z.object({
  type: z.literal("process.started"),
  data: z.object({ ...processCommon, tty: z.boolean() }),
});
/**
 * A process the emitting agent started has ended, as that agent's exit watch saw it. `error`: the
 * watch ended without seeing the exit (the sandbox was deleted or its pod recycled, which kills
 * every process, or the pod stopped answering); then exitCode and signal are null.
 */
const processExited = z.object({
  type: z.literal("process.exited"),
  data: z.object({
    ...processCommon,
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    timedOut: z.boolean(),
    /** From its start to its end as the pod recorded them (to when the watch gave up, with `error`). */
    durationMs: ms,
    error: z.string().optional(),
  }),
});

const portLinkCommon = {
  sandboxId: z.string(),
  /** The link's id (its host label); never its token, which is signed by the edge and never stored. */
  linkId: z.string(),
  port: z.number().int().min(1).max(65_535),
};
/** A port link was opened (POST …/ports/:port/links, or a model's open_port_link). */
const portLinkCreated = z.object({
  type: z.literal("port_link.created"),
  data: z.object({ ...portLinkCommon, public: z.boolean(), expiresAt: z.string() }),
});
/** A port link was revoked (DELETE …/links/:linkId). One that expires or ends with its sandbox has no event. */
const portLinkRevoked = z.object({
  type: z.literal("port_link.revoked"),
  data: z.object(portLinkCommon),
});

/** The type-specific part of every event: `type` and its `data`. */
export const PoolEventBodySchema = z.discriminatedUnion("type", [
  podCreated,
  podReady,
  podDeleted,
  podFailed,
  podPids,
  leaseAcquired,
  leaseRenewed,
  leaseReleased,
  leaseExpired,
  leaseConflict,
  leaseLost,
  queueEntered,
  queueLeft,
  queueTimeout,
  execStarted,
  execFinished,
  poolLeader,
  poolScale,
  sandboxCreated,
  sandboxUsed,
  sandboxDeleted,
  sandboxExpired,
  secretChanged,
  egressAllowed,
  egressDenied,
  processStarted,
  processExited,
  portLinkCreated,
  portLinkRevoked,
]);
export type PoolEventBody = z.infer<typeof PoolEventBodySchema>;
export type PoolEventType = PoolEventBody["type"];
export const POOL_EVENT_TYPES = PoolEventBodySchema.options.map((o) => o.shape.type.value) as PoolEventType[];

/** What every event carries besides its body; `requestId` is present on everything caused by a request. */
export const PoolEventEnvelopeSchema = z.object({
  at: z.string(),
  agentId: z.string(),
  region: z.string().optional(),
  requestId: z.string().optional(),
  tenant: z.string().optional(),
  pod: z.string().optional(),
});
export type PoolEventEnvelope = z.infer<typeof PoolEventEnvelopeSchema>;

export const PoolEventSchema = z.intersection(PoolEventEnvelopeSchema, PoolEventBodySchema);
export type PoolEvent = PoolEventEnvelope & PoolEventBody;
/** One event of type T. */
export type PoolEventOf<T extends PoolEventType> = PoolEvent & { type: T };

/** The SSE event names of the pool stream (agent `/v1/events`, edge `GET /v1/events`). */
export const POOL_SSE_EVENTS = { snapshot: "snapshot", event: "pool" } as const;
