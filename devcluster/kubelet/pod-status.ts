/** Status as sent on the wire (plain JSON: times are RFC 3339 strings). */
export type Json = Record<string, unknown>;

type ConditionType = "PodScheduled" | "Initialized" | "ContainersReady" | "Ready" | "DisruptionTarget";

/**
 * The pod's conditions, keeping each one's lastTransitionTime until its status really changes
 * (as the kubelet does). Always rendered as the full list: a merge patch replaces lists whole.
 */
export class PodConditions {
  private readonly state = new Map<
    ConditionType,
    { status: boolean; since: string; reason?: string; message?: string }
  >();

  set(type: ConditionType, status: boolean, reason?: string, message?: string): void {
    const cur = this.state.get(type);
    if (cur && cur.status === status) {
      cur.reason = reason;
      cur.message = message;
      return;
    }
    this.state.set(type, { status, since: now(), reason, message });
  }

  render(): Json[] {
    const out: Json[] = [];
    for (const type of [
      "DisruptionTarget",
      "Initialized",
      "Ready",
      "ContainersReady",
      "PodScheduled",
    ] as const) {
      const c = this.state.get(type);
      if (!c) continue;
      const cond: Json = {
        type,
        status: c.status ? "True" : "False",
        lastProbeTime: null,
        lastTransitionTime: c.since,
      };
      if (c.reason) cond.reason = c.reason;
      if (c.message) cond.message = c.message;
      out.push(cond);
    }
    return out;
  }
}

/** RFC 3339 with second precision, as the API serialises metav1.Time. */
export function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

export function waitingStatus(
  name: string,
  image: string,
  reason: string,
  message: string | undefined,
  restartCount: number,
): Json {
  const waiting: Json = { reason };
  if (message) waiting.message = message;
  return {
    name,
    image,
    imageID: "",
    ready: false,
    started: false,
    restartCount,
    state: { waiting },
  };
}
