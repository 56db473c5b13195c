import type {
  ExecutionSnapshot,
  PodState,
  PoolSnapshot,
  ProcessSnapshot,
  SandboxSnapshot,
} from "../../shared/api.ts";
import type { PoolEvent } from "../../shared/events.ts";

/*
 * The dashboard's reducer: folds PoolSnapshot + PoolEvent messages into per-region state. Pure
 * (no DOM, no clock: `nowMs` is a parameter), so the page and the unit tests run the same code;
 * view.ts derives what the page draws from this state.
 *
 * Times: agents stamp events with their own clock. Each agent's offset to the local clock is
 * learned from its snapshot (`localNow - snapshot.at`), and every stored time is local ms, so
 * countdowns tick with `Date.now()` in the page without trusting the two clocks to agree.
 *
 * Events are the typed union of shared/events.ts: every field read here is one the agent sends
 * (the type checker proves it). The page has no zod, so decode.ts only checks the envelope and
 * each read of a data field still tolerates a missing or mistyped value.
 */

export interface HolderView {
  agentId: string;
  requestId: string;
  tenant: string;
}

export interface PodRecord {
  name: string;
  state: PodState;
  podIP: string | null;
  holder: HolderView | null;
  /** Local-clock ms. */
  acquiredAtMs: number | null;
  renewedAtMs: number | null;
  leaseDurationSeconds: number | null;
  transitions: number;
  /** Local-clock ms of the newest change applied: older events for this pod are stale. */
  lastChangeMs: number;
  /** Why the pod failed (pod.failed: the kubelet's reason and message). */
  failure?: string;
}

export interface WaiterRecord {
  agentId: string;
  requestId: string;
  tenant: string;
  sinceMs: number;
}

export interface ExecutionRecord {
  /** Stable across snapshots and events: agent, request, pod and the start on the agent's clock. */
  key: string;
  agentId: string;
  requestId: string;
  tenant: string;
  pod: string;
  commandPreview: string;
  startedAtMs: number;
  finishedAtMs: number | null;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number | null;
  queueMs: number | null;
  startSeen: boolean;
}

export interface SandboxRecord {
  id: string;
  pod: string;
  tenant: string;
  name: string | null;
  idleTimeoutSeconds: number;
  /** Local-clock ms. */
  lastActivityMs: number;
  lastCommand: string | null;
}

/** A running process an agent started (process.started seen, process.exited not yet). */
export interface ProcessRecord {
  /** `<pod>/<pid>`: a pid is unique in its pod while it runs. */
  key: string;
  agentId: string;
  sandboxId: string | null;
  pod: string;
  tenant: string;
  pid: number;
  commandPreview: string;
  tty: boolean;
  /** Local-clock ms. */
  startedAtMs: number;
}

/** An open port link (port_link.created seen; not revoked, its sandbox not gone). No token: events carry none. */
export interface LinkRecord {
  linkId: string;
  sandboxId: string;
  tenant: string;
  port: number;
  public: boolean;
  /** Local-clock ms; the view hides it from then on. */
  expiresAtMs: number;
}

export interface AgentTotals {
  acquisitions: number;
  conflicts: number;
  queueTimeouts: number;
  acquireP50Ms: number | null;
  acquireP99Ms: number | null;
}

/** One pool.scale decision of the leader, local ms. */
export interface ScaleRecord {
  atMs: number;
  reason: string;
  free: number;
  held: number;
  starting: number;
  /** Of `starting`: pods no node has room for (the pool adds none while any exists). */
  unschedulable: number;
  total: number;
  wanted: number;
  create: number;
  remove: number;
  refusal: string | null;
}

/** One connection through an agent's egress proxy (egress.allowed / egress.denied), local ms. */
export interface EgressRecord {
  atMs: number;
  tenant: string;
  sandboxId: string | null;
  host: string;
  port: number;
  decision: "allowed" | "denied";
  /** Why it was refused (a README egress code), or why the proxy cut it. */
  reason: string | null;
  bytes: number;
}

export interface RegionState {
  region: string;
  poolSize: number | null;
  recycle: "replace" | "scrub" | "reuse-same-tenant" | null;
  leader: string | null;
  /** The lease duration last seen in this region: events may omit it. */
  leaseSeconds: number | null;
  pods: Record<string, PodRecord>;
  /** Sandboxes that live across requests, by id. */
  sandboxes: Record<string, SandboxRecord>;
  /** Running processes, by `<pod>/<pid>` (absent in states made before processes existed). */
  processes?: Record<string, ProcessRecord>;
  /** Open port links, by link id (absent in states made before links existed). */
  links?: Record<string, LinkRecord>;
  /** Deleted pods and when (local ms): late events for them must not bring a tile back. */
  tombstones: Record<string, number>;
  queue: WaiterRecord[];
  executions: ExecutionRecord[];
  /** Counters are per agent (each agent counts its own work); the page shows the sum. */
  totals: Record<string, AgentTotals>;
  /** Agent clock → local clock, learned from that agent's snapshot. */
  clockOffsetMs: Record<string, number>;
  /** Agent-clock ms of each agent's latest snapshot (events older than it are already in it). */
  snapshotAt: Record<string, number>;
  /** Acquire latencies seen live since the page connected (bounded). */
  acquireSamples: number[];
  /** Recently applied event keys, to drop duplicates (bounded). */
  seen: string[];
  /** The leader's scale decisions, oldest first (bounded): pool size over time and why. */
  scale: ScaleRecord[];
  /** Recent egress connections, newest first (bounded). */
  egress?: EgressRecord[];
}

export interface DashboardState {
  regions: Record<string, RegionState>;
  messages: number;
}

export type DashboardMessage =
  | { kind: "snapshot"; snapshot: PoolSnapshot }
  | { kind: "event"; event: PoolEvent };

export const MAX_EXECUTIONS = 50;
const MAX_SAMPLES = 500;
const MAX_SEEN = 1000;
const MAX_TOMBSTONES = 200;
const MAX_SCALE = 120;
export const MAX_EGRESS = 50;

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const parseTime = (v: unknown): number | null => {
  if (typeof v !== "string") return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
};

export function initialState(): DashboardState {
  return { regions: {}, messages: 0 };
}

function emptyRegion(region: string): RegionState {
  return {
    region,
    poolSize: null,
    recycle: null,
    leader: null,
    leaseSeconds: null,
    pods: {},
    sandboxes: {},
    processes: {},
    links: {},
    tombstones: {},
    queue: [],
    executions: [],
    totals: {},
    clockOffsetMs: {},
    snapshotAt: {},
    acquireSamples: [],
    seen: [],
    scale: [],
    egress: [],
  };
}

/** A copy whose containers may be changed freely: the input state is never mutated. */
function copyRegion(r: RegionState): RegionState {
  return {
    ...r,
    pods: { ...r.pods },
    sandboxes: { ...r.sandboxes },
    processes: { ...(r.processes ?? {}) },
    links: { ...(r.links ?? {}) },
    tombstones: { ...r.tombstones },
    queue: [...r.queue],
    executions: [...r.executions],
    totals: { ...r.totals },
    clockOffsetMs: { ...r.clockOffsetMs },
    snapshotAt: { ...r.snapshotAt },
    acquireSamples: [...r.acquireSamples],
    seen: [...r.seen],
    scale: [...(r.scale ?? [])],
    egress: [...(r.egress ?? [])],
  };
}

function agentTotals(r: RegionState, agentId: string): AgentTotals {
  const t = r.totals[agentId] ?? {
    acquisitions: 0,
    conflicts: 0,
    queueTimeouts: 0,
    acquireP50Ms: null,
    acquireP99Ms: null,
  };
  const copy = { ...t };
  r.totals[agentId] = copy;
  return copy;
}

function applySnapshot(prev: RegionState | undefined, s: PoolSnapshot, nowMs: number): RegionState {
  const r = copyRegion(prev ?? emptyRegion(s.region));
  const agentAt = parseTime(s.at) ?? nowMs;
  const offset = nowMs - agentAt;
  r.clockOffsetMs[s.agentId] = offset;
  r.snapshotAt[s.agentId] = agentAt;
  r.poolSize = s.poolSize;
  r.recycle = s.recycle;
  // Pods are the shared pool (every agent watches the same Leases): the latest snapshot wins.
  const local = (iso: string | null) => {
    const t = parseTime(iso);
    return t === null ? null : t + offset;
  };
  r.pods = {};
  r.leaseSeconds =
    s.pods.find((p) => p.leaseDurationSeconds !== null)?.leaseDurationSeconds ?? r.leaseSeconds;
  for (const p of s.pods) {
    r.pods[p.name] = {
      name: p.name,
      state: p.state,
      podIP: p.podIP,
      holder: p.holder ? { ...p.holder } : null,
      acquiredAtMs: local(p.acquiredAt),
      renewedAtMs: local(p.renewedAt),
      leaseDurationSeconds: p.leaseDurationSeconds,
      transitions: p.transitions,
      lastChangeMs: nowMs,
    };
    delete r.tombstones[p.name];
  }
  if (s.sandboxes) {
    r.sandboxes = {};
    for (const b of s.sandboxes) {
      r.sandboxes[b.id] = {
        id: b.id,
        pod: b.pod,
        tenant: b.tenant,
        name: b.name,
        idleTimeoutSeconds: b.idleTimeoutSeconds,
        lastActivityMs: local(b.lastActivityAt) ?? nowMs,
        lastCommand: b.lastCommand,
      };
    }
  }
  // The queue and the counters belong to the agent that sent the snapshot.
  r.queue = r.queue.filter((w) => w.agentId !== s.agentId);
  for (const w of s.queue.waiters) {
    r.queue.push({
      agentId: s.agentId,
      requestId: w.requestId,
      tenant: w.tenant,
      sinceMs: nowMs - w.waitedMs,
    });
  }
  r.totals[s.agentId] = {
    acquisitions: s.totals.acquisitions,
    conflicts: s.totals.conflicts,
    queueTimeouts: s.totals.queueTimeouts,
    acquireP50Ms: s.totals.acquireP50Ms,
    acquireP99Ms: s.totals.acquireP99Ms,
  };
  r.acquireSamples = [];
  if (s.executions) {
    // The agent's own history is the truth for its executions up to the snapshot's time; events
    // after it are folded on top. Older agents send none: what was seen live stays.
    r.executions = [
      ...r.executions.filter((x) => x.agentId !== s.agentId),
      ...s.executions.map((x) => executionFromSnapshot(x, s.agentId, offset, nowMs)),
    ];
    sortAndBound(r.executions);
  }
  if (s.processes) applyProcessSnapshot(r, s.agentId, s.processes, offset, nowMs);
  if (s.sandboxes) applyLinkSnapshot(r, s.sandboxes, offset);
  return r;
}

// ---------- processes (process.started / process.exited and each agent's snapshot of them) ----------

const processKey = (pod: string, pid: number) => `${pod}/${pid}`;

/** An agent's snapshot lists the running processes it started: they replace what the page had of that agent. */
function applyProcessSnapshot(
  r: RegionState,
  agentId: string,
  list: readonly ProcessSnapshot[],
  offset: number,
  nowMs: number,
): void {
  const kept = Object.values(r.processes ?? {}).filter((p) => p.agentId !== agentId);
  r.processes = {};
  for (const p of kept) r.processes[p.key] = p;
  for (const p of list) {
    const key = processKey(p.pod, p.pid);
    r.processes[key] = {
      key,
      agentId,
      sandboxId: p.sandboxId,
      pod: p.pod,
      tenant: p.tenant,
      pid: p.pid,
      commandPreview: p.commandPreview,
      tty: p.tty,
      startedAtMs: (parseTime(p.startedAt) ?? nowMs - offset) + offset,
    };
  }
}

// ---------- port links (port_link.created / port_link.revoked) ----------

/**
 * An agent's snapshot lists every sandbox with its open links as the Leases hold them (shared by
 * all replicas): they replace what the page had. From an agent that predates links (no `links`
 * on any sandbox), the page keeps what it saw live.
 */
function applyLinkSnapshot(r: RegionState, sandboxes: readonly SandboxSnapshot[], offsetMs: number): void {
  if (!sandboxes.some((b) => b.links !== undefined)) return;
  r.links = {};
  for (const b of sandboxes) {
    // The page decodes only the envelope: a malformed list is skipped, not thrown on.
    for (const l of Array.isArray(b.links) ? b.links : []) {
      const expires = parseTime(l.expiresAt);
      if (expires === null) continue;
      r.links[l.id] = {
        linkId: l.id,
        sandboxId: b.id,
        tenant: b.tenant,
        port: l.port,
        public: l.public,
        expiresAtMs: expires + offsetMs,
      };
    }
  }
}

/** A link opened or revoked; a deleted or expired sandbox takes its links with it. */
function applyLinkEvent(r: RegionState, e: PoolEvent, offsetMs: number): void {
  const links = (r.links ??= {});
  if (e.type === "port_link.created") {
    const linkId = str(e.data.linkId);
    const port = num(e.data.port);
    const expires = parseTime(e.data.expiresAt);
    if (linkId === null || port === null || expires === null) return;
    links[linkId] = {
      linkId,
      sandboxId: str(e.data.sandboxId) ?? "",
      tenant: e.tenant ?? "",
      port,
      public: e.data.public === true,
      expiresAtMs: expires + offsetMs,
    };
  } else if (e.type === "port_link.revoked") {
    delete links[str(e.data.linkId) ?? ""];
  } else if (e.type === "sandbox.deleted" || e.type === "sandbox.expired") {
    const id = str(e.data.sandboxId);
    for (const l of Object.values(links)) if (l.sandboxId === id) delete links[l.linkId];
  }
}

/** A process started or ended; a deleted or expired sandbox takes its processes with it. */
function applyProcessEvent(r: RegionState, e: PoolEvent, atMs: number): void {
  const processes = (r.processes ??= {});
  if (e.type === "process.started" || e.type === "process.exited") {
    const pid = num(e.data.pid);
    if (pid === null) return;
    const key = processKey(e.pod ?? "", pid);
    if (e.type === "process.exited") {
      delete processes[key];
      return;
    }
    processes[key] = {
      key,
      agentId: e.agentId,
      sandboxId: str(e.data.sandboxId),
      pod: e.pod ?? "",
      tenant: e.tenant ?? "",
      pid,
      commandPreview: str(e.data.commandPreview) ?? "",
      tty: e.data.tty === true,
      startedAtMs: atMs,
    };
  } else if (e.type === "sandbox.deleted" || e.type === "sandbox.expired") {
    const id = str(e.data.sandboxId);
    for (const p of Object.values(processes)) if (p.sandboxId === id) delete processes[p.key];
  }
}

function executionFromSnapshot(
  x: ExecutionSnapshot,
  agentId: string,
  offset: number,
  nowMs: number,
): ExecutionRecord {
  const startedAgent = parseTime(x.startedAt) ?? nowMs - offset;
  const finishedAgent = parseTime(x.finishedAt);
  return {
    key: executionKey(agentId, x.requestId, x.pod, startedAgent),
    agentId,
    requestId: x.requestId,
    tenant: x.tenant,
    pod: x.pod,
    commandPreview: x.commandPreview,
    startedAtMs: startedAgent + offset,
    finishedAtMs: finishedAgent === null ? null : finishedAgent + offset,
    exitCode: x.exitCode,
    timedOut: x.timedOut,
    durationMs: x.durationMs,
    queueMs: x.queueMs,
    startSeen: true,
  };
}

const executionKey = (agentId: string, requestId: string, pod: string, agentStartMs: number) =>
  `${agentId}/${requestId}/${pod}/${agentStartMs}`;

function sortAndBound(executions: ExecutionRecord[]): void {
  executions.sort((a, b) => b.startedAtMs - a.startedAtMs);
  if (executions.length > MAX_EXECUTIONS) executions.length = MAX_EXECUTIONS;
}

function eventKey(e: PoolEvent): string {
  return [e.type, e.at, e.agentId, e.requestId ?? "", e.pod ?? "", e.data ? JSON.stringify(e.data) : ""].join(
    "|",
  );
}

function podFor(r: RegionState, name: string, atMs: number): PodRecord | null {
  const tomb = r.tombstones[name];
  if (tomb !== undefined && atMs <= tomb) return null;
  const existing = r.pods[name];
  if (existing && atMs < existing.lastChangeMs) return null;
  return existing
    ? { ...existing }
    : {
        name,
        state: "starting",
        podIP: null,
        holder: null,
        acquiredAtMs: null,
        renewedAtMs: null,
        leaseDurationSeconds: null,
        transitions: 0,
        lastChangeMs: atMs,
      };
}

function clearLease(p: PodRecord, state: PodState): void {
  p.state = state;
  p.holder = null;
  p.acquiredAtMs = null;
  p.renewedAtMs = null;
}

function removeWaiter(r: RegionState, agentId: string, requestId: string | undefined): boolean {
  if (!requestId) return false;
  const before = r.queue.length;
  r.queue = r.queue.filter((w) => !(w.requestId === requestId && w.agentId === agentId));
  return r.queue.length !== before;
}

function applyEvent(prev: RegionState | undefined, e: PoolEvent, region: string, nowMs: number): RegionState {
  const base = prev ?? emptyRegion(region);
  const key = eventKey(e);
  if (base.seen.includes(key)) return base;
  const agentAt = parseTime(e.at) ?? nowMs - (base.clockOffsetMs[e.agentId] ?? 0);
  const atMs = agentAt + (base.clockOffsetMs[e.agentId] ?? 0);
  // Older than this agent's snapshot: its effect is already in it.
  const snapAt = base.snapshotAt[e.agentId];
  if (snapAt !== undefined && agentAt < snapAt) return base;
  const r = copyRegion(base);
  r.seen.push(key);
  if (r.seen.length > MAX_SEEN) r.seen.splice(0, r.seen.length - MAX_SEEN);
  const updatePod = (fn: (p: PodRecord) => boolean | undefined): void => {
    if (!e.pod) return;
    const p = podFor(r, e.pod, atMs);
    if (!p) return;
    if (fn(p) === false) return;
    p.lastChangeMs = Math.max(p.lastChangeMs, atMs);
    r.pods[p.name] = p;
  };

  switch (e.type) {
    case "pod.created":
      updatePod((p) => {
        if (p.state !== "starting" && r.pods[p.name]) return false;
        p.state = "starting";
        return true;
      });
      break;
    case "pod.ready":
      updatePod((p) => {
        clearLease(p, "ready");
        const ip = str(e.data.podIP);
        if (ip) p.podIP = ip;
        return true;
      });
      break;
    case "pod.failed":
      updatePod((p) => {
        clearLease(p, "failed");
        p.failure = `${str(e.data.reason) ?? "Failed"}: ${str(e.data.message) ?? ""}`;
        return true;
      });
      break;
    case "pod.deleted":
      if (e.pod) {
        const existing = r.pods[e.pod];
        if (existing && atMs < existing.lastChangeMs) break;
        delete r.pods[e.pod];
        r.tombstones[e.pod] = atMs;
        const names = Object.keys(r.tombstones);
        if (names.length > MAX_TOMBSTONES) {
          for (const n of names.slice(0, names.length - MAX_TOMBSTONES)) delete r.tombstones[n];
        }
      }
      break;
    case "lease.acquired": {
      const t = agentTotals(r, e.agentId);
      t.acquisitions += 1;
      const acquireMs = num(e.data.acquireMs);
      const leaseSeconds = num(e.data.leaseDurationSeconds);
      const fence = num(e.data.fence);
      if (acquireMs !== null) {
        r.acquireSamples.push(acquireMs);
        if (r.acquireSamples.length > MAX_SAMPLES)
          r.acquireSamples.splice(0, r.acquireSamples.length - MAX_SAMPLES);
      }
      removeWaiter(r, e.agentId, e.requestId);
      updatePod((p) => {
        p.state = "leased";
        p.holder = { agentId: e.agentId, requestId: e.requestId ?? "", tenant: e.tenant ?? "" };
        p.acquiredAtMs = atMs;
        p.renewedAtMs = atMs;
        r.leaseSeconds = leaseSeconds ?? r.leaseSeconds;
        p.leaseDurationSeconds = leaseSeconds ?? p.leaseDurationSeconds ?? r.leaseSeconds;
        p.transitions = fence ?? p.transitions + 1;
        return true;
      });
      break;
    }
    case "lease.renewed": {
      const leaseSeconds = num(e.data.leaseDurationSeconds);
      updatePod((p) => {
        if (!p.holder || (e.requestId && p.holder.requestId !== e.requestId)) return false;
        p.renewedAtMs = atMs;
        p.leaseDurationSeconds = leaseSeconds ?? p.leaseDurationSeconds;
        return true;
      });
      break;
    }
    case "lease.released":
    case "lease.expired":
    case "lease.lost": {
      // Replaced pods show as recycling until pod.ready/pod.deleted; a lost lease is the new holder's.
      const replaced = e.type !== "lease.lost" && e.data.recycle === "replace";
      updatePod((p) => {
        // A late release of an earlier lease must not free the pod from its current holder.
        if (p.holder && e.requestId && p.holder.requestId !== e.requestId) return false;
        // Not held: nothing to clear, but remember the time, so a reordered older acquire of
        // this lease cannot re-lease the tile afterwards.
        if (!p.holder && p.state !== "leased") return true;
        clearLease(p, replaced ? "recycling" : "ready");
        return true;
      });
      break;
    }
    case "lease.conflict":
      agentTotals(r, e.agentId).conflicts += 1;
      break;
    case "queue.entered":
      if (e.requestId && !r.queue.some((w) => w.requestId === e.requestId && w.agentId === e.agentId)) {
        r.queue.push({ agentId: e.agentId, requestId: e.requestId, tenant: e.tenant ?? "", sinceMs: atMs });
        r.queue.sort((a, b) => a.sinceMs - b.sinceMs);
      }
      break;
    case "queue.left":
      removeWaiter(r, e.agentId, e.requestId);
      break;
    case "queue.timeout":
      removeWaiter(r, e.agentId, e.requestId);
      agentTotals(r, e.agentId).queueTimeouts += 1;
      break;
    case "exec.started":
    case "exec.finished":
      applyExec(r, e, atMs, agentAt);
      break;
    case "pool.scale": {
      const d = e.data;
      r.scale = [
        ...(r.scale ?? []),
        {
          atMs,
          reason: str(d.reason) ?? "",
          free: num(d.free) ?? 0,
          held: num(d.held) ?? 0,
          starting: num(d.starting) ?? 0,
          unschedulable: num(d.unschedulable) ?? 0,
          total: num(d.total) ?? 0,
          wanted: num(d.wanted) ?? 0,
          create: num(d.create) ?? 0,
          remove: num(d.remove) ?? 0,
          refusal: str(d.refusal),
        },
      ].slice(-MAX_SCALE);
      break;
    }
    case "egress.allowed":
    case "egress.denied": {
      const d = e.data;
      const record: EgressRecord = {
        atMs,
        tenant: e.tenant ?? "",
        sandboxId: str(d.sandboxId),
        host: str(d.host) ?? "",
        port: num(d.port) ?? 0,
        decision: e.type === "egress.allowed" ? "allowed" : "denied",
        reason: e.type === "egress.denied" ? str(e.data.reason) : (str(e.data.closedBy) ?? null),
        bytes: (num(d.bytesUp) ?? 0) + (num(d.bytesDown) ?? 0),
      };
      r.egress = [record, ...(r.egress ?? [])].slice(0, MAX_EGRESS);
      break;
    }
    case "pool.leader": {
      // leader is whether the emitting agent leads now: a step-down clears it (if it was that agent).
      const identity = str(e.data.identity) ?? e.agentId;
      if (e.data.leader === true) r.leader = identity;
      else if (r.leader === identity) r.leader = null;
      break;
    }
    case "sandbox.created": {
      const id = str(e.data.sandboxId);
      if (id)
        r.sandboxes[id] = {
          id,
          pod: e.pod ?? "",
          tenant: e.tenant ?? "",
          name: str(e.data.name),
          idleTimeoutSeconds: num(e.data.idleTimeoutSeconds) ?? 0,
          lastActivityMs: atMs,
          lastCommand: null,
        };
      break;
    }
    case "sandbox.used": {
      const known = r.sandboxes[str(e.data.sandboxId) ?? ""];
      if (known && atMs >= known.lastActivityMs)
        r.sandboxes[known.id] = {
          ...known,
          lastActivityMs: atMs,
          lastCommand: str(e.data.what) ?? known.lastCommand,
        };
      break;
    }
    case "sandbox.deleted":
    case "sandbox.expired":
      delete r.sandboxes[str(e.data.sandboxId) ?? ""];
      applyProcessEvent(r, e, atMs);
      applyLinkEvent(r, e, base.clockOffsetMs[e.agentId] ?? 0);
      break;
    case "process.started":
    case "process.exited":
      applyProcessEvent(r, e, atMs);
      break;
    case "port_link.created":
    case "port_link.revoked":
      applyLinkEvent(r, e, base.clockOffsetMs[e.agentId] ?? 0);
      break;
  }
  return r;
}

function applyExec(
  r: RegionState,
  e: PoolEvent & { type: "exec.started" | "exec.finished" },
  atMs: number,
  agentAt: number,
): void {
  const data = e.data;
  const requestId = e.requestId ?? "";
  const pod = e.pod ?? "";
  // One request runs its commands one after another on one pod: request + pod + agent finds the open one.
  const matches = (x: ExecutionRecord) =>
    x.requestId === requestId && x.pod === pod && x.agentId === e.agentId;
  if (e.type === "exec.started") {
    // A finished record without a start: the two arrived out of order; complete it.
    const idx = r.executions.findIndex(
      (x) => matches(x) && !x.startSeen && (x.finishedAtMs === null || x.finishedAtMs >= atMs),
    );
    const existing = idx >= 0 ? r.executions[idx] : undefined;
    if (existing) {
      r.executions[idx] = {
        ...existing,
        startSeen: true,
        startedAtMs: atMs,
        commandPreview: str(data.commandPreview) ?? existing.commandPreview,
      };
      return;
    }
    r.executions.unshift({
      key: executionKey(e.agentId, requestId, pod, agentAt),
      agentId: e.agentId,
      requestId,
      tenant: e.tenant ?? "",
      pod,
      commandPreview: str(data.commandPreview) ?? "",
      startedAtMs: atMs,
      finishedAtMs: null,
      exitCode: null,
      timedOut: false,
      durationMs: null,
      queueMs: num(data.queueMs),
      startSeen: true,
    });
  } else {
    const done = e.data;
    const idx = r.executions.findIndex((x) => matches(x) && x.finishedAtMs === null);
    const durationMs = num(done.durationMs);
    const finished = {
      finishedAtMs: atMs,
      exitCode: num(done.exitCode),
      timedOut: done.timedOut === true,
      durationMs,
    };
    const existing = idx >= 0 ? r.executions[idx] : undefined;
    if (existing) {
      r.executions[idx] = {
        ...existing,
        ...finished,
        queueMs: num(data.queueMs) ?? existing.queueMs,
        commandPreview: existing.commandPreview || (str(data.commandPreview) ?? ""),
      };
    } else {
      r.executions.unshift({
        key: executionKey(e.agentId, requestId, pod, agentAt - (durationMs ?? 0)),
        agentId: e.agentId,
        requestId,
        tenant: e.tenant ?? "",
        pod,
        commandPreview: str(data.commandPreview) ?? "",
        startedAtMs: atMs - (durationMs ?? 0),
        queueMs: num(data.queueMs),
        startSeen: false,
        ...finished,
      });
    }
  }
  sortAndBound(r.executions);
}

export function reduce(state: DashboardState, msg: DashboardMessage, nowMs: number): DashboardState {
  if (msg.kind === "snapshot") {
    const s = msg.snapshot;
    return {
      regions: { ...state.regions, [s.region]: applySnapshot(state.regions[s.region], s, nowMs) },
      messages: state.messages + 1,
    };
  }
  const e = msg.event;
  const region = e.region ?? "local";
  const next = applyEvent(state.regions[region], e, region, nowMs);
  if (next === state.regions[region]) return state;
  return { regions: { ...state.regions, [region]: next }, messages: state.messages + 1 };
}
