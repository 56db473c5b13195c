import type { PoolEvent, PoolEventType } from "../../shared/api.ts";

/** What emitters supply; the bus stamps time, agent and region. */
export interface PoolEventInput {
  type: PoolEventType;
  requestId?: string;
  tenant?: string;
  pod?: string;
  data?: Record<string, unknown>;
}

export type PoolEventListener = (e: PoolEvent) => void;

/**
 * The in-process event bus: every pool/lease/queue event goes through here to telemetry, the
 * dashboard stream and tests. Listeners run synchronously; one throwing never stops the others.
 */
export class EventBus {
  private readonly listeners = new Set<PoolEventListener>();

  constructor(
    readonly agentId: string,
    readonly region?: string,
  ) {}

  emit(input: PoolEventInput): PoolEvent {
    const event: PoolEvent = { type: input.type, at: new Date().toISOString(), agentId: this.agentId };
    if (this.region !== undefined) event.region = this.region;
    if (input.requestId !== undefined) event.requestId = input.requestId;
    if (input.tenant !== undefined) event.tenant = input.tenant;
    if (input.pod !== undefined) event.pod = input.pod;
    if (input.data !== undefined) event.data = input.data;
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // telemetry must never break the lease path
      }
    }
    return event;
  }

  on(listener: PoolEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listen to some event types only. */
  onType(types: readonly PoolEventType[], listener: PoolEventListener): () => void {
    const set = new Set(types);
    return this.on((e) => {
      if (set.has(e.type)) listener(e);
    });
  }
}
