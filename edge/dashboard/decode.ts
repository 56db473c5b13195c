import type { PodState, PoolSnapshot } from "../../shared/api.ts";
import type { PoolEvent } from "../../shared/events.ts";
import type { SseMessage } from "../../shared/sse.ts";
import type { DashboardMessage } from "./reducer.ts";

/*
 * From an SSE message of the events stream to a reducer message. Light structural checks only:
 * the page carries no zod, and a malformed message must not break it (each read of a data field
 * in the reducer tolerates a missing or mistyped value).
 */

const POD_STATES: readonly PodState[] = ["starting", "ready", "leased", "recycling", "failed"];
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isPodState = (v: unknown): v is PodState => typeof v === "string" && POD_STATES.includes(v as PodState);

export function toMessage(sse: Pick<SseMessage, "event" | "data">): DashboardMessage | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(sse.data);
  } catch {
    return null;
  }
  if (!isObj(parsed)) return null;
  if (sse.event === "snapshot") {
    const q = parsed.queue;
    const t = parsed.totals;
    if (
      typeof parsed.region !== "string" ||
      typeof parsed.agentId !== "string" ||
      typeof parsed.at !== "string" ||
      !Array.isArray(parsed.pods) ||
      !isObj(q) ||
      !Array.isArray(q.waiters) ||
      !isObj(t)
    ) {
      return null;
    }
    const pods = parsed.pods.filter(
      (p: unknown) => isObj(p) && typeof p.name === "string" && isPodState(p.state),
    );
    return { kind: "snapshot", snapshot: { ...(parsed as unknown as PoolSnapshot), pods } };
  }
  if (sse.event === "pool") {
    if (
      typeof parsed.type !== "string" ||
      typeof parsed.at !== "string" ||
      typeof parsed.agentId !== "string"
    ) {
      return null;
    }
    // Every event has its data object; a malformed one becomes empty (each read tolerates that).
    const data = isObj(parsed.data) ? parsed.data : {};
    return { kind: "event", event: { ...parsed, data } as unknown as PoolEvent };
  }
  return null;
}
