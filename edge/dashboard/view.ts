import type { PodState } from "../../shared/api.ts";
import type {
  AgentTotals,
  DashboardState,
  EgressRecord,
  ExecutionRecord,
  RegionState,
  ScaleRecord,
} from "./reducer.ts";

/*
 * The view model: what the page draws, derived from the reducer's state at a given local time
 * (lease age and TTL countdown, queue waiters with their wait so far, the execution timeline,
 * totals). Pure: render.ts turns it into DOM, the unit tests read it directly.
 */

export interface SandboxTileView {
  id: string;
  pod: string;
  tenant: string;
  name: string | null;
  /** Until the idle timeout deletes it (≤ 0: due now). */
  idleLeftMs: number;
  lastCommand: string | null;
  /** Its running processes, oldest first. */
  processes: ProcessView[];
  /** Its open port links, soonest to expire first. */
  links: LinkView[];
}

export interface LinkView {
  linkId: string;
  port: number;
  public: boolean;
  /** Until it expires (> 0: expired ones are not shown). */
  expiresInMs: number;
}

export interface ProcessView {
  pid: number;
  commandPreview: string;
  tty: boolean;
  runningMs: number;
}

export interface PodTileView {
  name: string;
  state: PodState;
  podIP: string | null;
  tenant: string | null;
  requestId: string | null;
  agentId: string | null;
  ageMs: number | null;
  ttlMs: number | null;
  leaseDurationSeconds: number | null;
  transitions: number;
  /** Why a failed pod failed (the kubelet's reason and message), when an event said so. */
  failure: string | null;
}

export interface RegionView {
  region: string;
  poolSize: number | null;
  recycle: "replace" | "scrub" | "reuse-same-tenant" | null;
  leader: string | null;
  agents: string[];
  counts: Record<PodState, number>;
  pods: PodTileView[];
  queue: { depth: number; waiters: Array<{ requestId: string; tenant: string; waitedMs: number }> };
  executions: Array<ExecutionRecord & { status: "running" | "finished" }>;
  sandboxes: SandboxTileView[];
  totals: AgentTotals;
  /** Waiting callers per tenant, most first. */
  queueByTenant: Array<{ tenant: string; depth: number }>;
  /** The leader's last scale decision, and the recent ones (pool size over time). */
  scale: ScaleRecord | null;
  scaleHistory: ScaleRecord[];
  /** Recent egress connections, newest first. */
  egress: EgressRecord[];
}

export interface DashboardView {
  regions: RegionView[];
}

/** The running processes of one sandbox, oldest first. */
function processesOf(r: RegionState, sandboxId: string, nowMs: number): ProcessView[] {
  return Object.values(r.processes ?? {})
    .filter((p) => p.sandboxId === sandboxId)
    .sort((a, b) => a.startedAtMs - b.startedAtMs || a.pid - b.pid)
    .map((p) => ({
      pid: p.pid,
      commandPreview: p.commandPreview,
      tty: p.tty,
      runningMs: Math.max(0, nowMs - p.startedAtMs),
    }));
}

/** The open port links of one sandbox (unexpired at `nowMs`), soonest to expire first. */
export function linksOf(r: RegionState, sandboxId: string, nowMs: number): LinkView[] {
  return Object.values(r.links ?? {})
    .filter((l) => l.sandboxId === sandboxId && l.expiresAtMs > nowMs)
    .sort((a, b) => a.expiresAtMs - b.expiresAtMs || a.linkId.localeCompare(b.linkId))
    .map((l) => ({ linkId: l.linkId, port: l.port, public: l.public, expiresInMs: l.expiresAtMs - nowMs }));
}

export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? null;
}

export function formatMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "—";
  const abs = Math.max(0, ms);
  if (abs < 1000) return `${Math.round(abs)} ms`;
  if (abs < 60_000) return `${(abs / 1000).toFixed(abs < 10_000 ? 1 : 0)} s`;
  const m = Math.floor(abs / 60_000);
  const s = Math.floor((abs % 60_000) / 1000);
  return `${m}m ${String(s).padStart(2, "0")}s`;
}

export function view(state: DashboardState, nowMs: number): DashboardView {
  const regions = Object.values(state.regions)
    .sort((a, b) => a.region.localeCompare(b.region))
    .map((r): RegionView => {
      const counts: Record<PodState, number> = {
        starting: 0,
        ready: 0,
        leased: 0,
        recycling: 0,
        failed: 0,
      };
      const pods = Object.values(r.pods)
        .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }))
        .map((p): PodTileView => {
          counts[p.state] += 1;
          const leased = p.state === "leased";
          const expiresAt =
            leased && p.renewedAtMs !== null && p.leaseDurationSeconds !== null
              ? p.renewedAtMs + p.leaseDurationSeconds * 1000
              : null;
          return {
            name: p.name,
            state: p.state,
            podIP: p.podIP,
            tenant: leased ? (p.holder?.tenant ?? null) : null,
            requestId: leased ? (p.holder?.requestId ?? null) : null,
            agentId: leased ? (p.holder?.agentId ?? null) : null,
            ageMs: leased && p.acquiredAtMs !== null ? Math.max(0, nowMs - p.acquiredAtMs) : null,
            // Clamped: the learned clock offset includes the snapshot's transit time.
            ttlMs:
              expiresAt === null || p.leaseDurationSeconds === null
                ? null
                : Math.min(p.leaseDurationSeconds * 1000, Math.max(0, expiresAt - nowMs)),
            leaseDurationSeconds: p.leaseDurationSeconds,
            transitions: p.transitions,
            failure: p.state === "failed" ? (p.failure ?? null) : null,
          };
        });
      const agents = Object.keys(r.totals).sort();
      const all = Object.values(r.totals);
      // Percentiles cannot be merged across agents: live samples win, else the busiest agent's.
      const busiest = all.reduce<AgentTotals | null>(
        (best, t) => (best === null || t.acquisitions > best.acquisitions ? t : best),
        null,
      );
      const live = r.acquireSamples.length > 0;
      return {
        region: r.region,
        poolSize: r.poolSize,
        recycle: r.recycle,
        leader: r.leader,
        agents,
        counts,
        pods,
        queue: {
          depth: r.queue.length,
          waiters: r.queue.map((w) => ({
            requestId: w.requestId,
            tenant: w.tenant,
            waitedMs: Math.max(0, nowMs - w.sinceMs),
          })),
        },
        executions: r.executions.map((x) => ({
          ...x,
          status: x.finishedAtMs === null ? "running" : "finished",
        })),
        sandboxes: Object.values(r.sandboxes ?? {})
          .map((b) => ({
            id: b.id,
            pod: b.pod,
            tenant: b.tenant,
            name: b.name,
            idleLeftMs: b.lastActivityMs + b.idleTimeoutSeconds * 1000 - nowMs,
            lastCommand: b.lastCommand,
            processes: processesOf(r, b.id, nowMs),
            links: linksOf(r, b.id, nowMs),
          }))
          .sort((a, b) => a.idleLeftMs - b.idleLeftMs),
        queueByTenant: Object.entries(
          r.queue.reduce<Record<string, number>>((m, w) => {
            m[w.tenant] = (m[w.tenant] ?? 0) + 1;
            return m;
          }, {}),
        )
          .map(([tenant, depth]) => ({ tenant, depth }))
          .sort((a, b) => b.depth - a.depth || a.tenant.localeCompare(b.tenant)),
        scale: r.scale?.[r.scale.length - 1] ?? null,
        scaleHistory: [...(r.scale ?? [])],
        egress: [...(r.egress ?? [])],
        totals: {
          acquisitions: all.reduce((n, t) => n + t.acquisitions, 0),
          conflicts: all.reduce((n, t) => n + t.conflicts, 0),
          queueTimeouts: all.reduce((n, t) => n + t.queueTimeouts, 0),
          acquireP50Ms: live ? percentile(r.acquireSamples, 50) : (busiest?.acquireP50Ms ?? null),
          acquireP99Ms: live ? percentile(r.acquireSamples, 99) : (busiest?.acquireP99Ms ?? null),
        },
      };
    });
  return { regions };
}

/** Incremental text/event-stream parser (WHATWG rules: comments, multi-line data, CR/LF/CRLF). */
