import type {
  PoolEvent,
  PoolEventBody,
  PoolEventEnvelope,
  PoolEventOf,
  PoolEventType,
} from "../../shared/events.ts";

/** What emitters supply: the typed body and who it concerns; the bus stamps time, agent and region. */
export type PoolEventInput = PoolEventBody & Partial<Pick<PoolEventEnvelope, "requestId" | "tenant" | "pod">>;

export type PoolEventListener = (e: PoolEvent) => void;

/**
 * The in-process event bus: every pool/lease/queue/exec event goes through here to telemetry, the
 * dashboard stream and tests. Listeners run synchronously; one throwing never stops the others.
 */
export class EventBus {
  private readonly listeners = new Set<PoolEventListener>();

  constructor(
    readonly agentId: string,
    readonly region?: string,
  ) {}

  emit(input: PoolEventInput): PoolEvent {
    const { requestId, tenant, pod, ...body } = input;
    const envelope: PoolEventEnvelope = { at: new Date().toISOString(), agentId: this.agentId };
    if (this.region !== undefined) envelope.region = this.region;
    if (requestId !== undefined) envelope.requestId = requestId;
    if (tenant !== undefined) envelope.tenant = tenant;
    if (pod !== undefined) envelope.pod = pod;
    const event = { ...envelope, ...(body as PoolEventBody) } as PoolEvent;
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // telemetry must never break the lease path (a listener logs its own failures)
      }
    }
    return event;
  }

  on(listener: PoolEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listen to some event types only; the listener sees them with their typed data. */
  onType<T extends PoolEventType>(types: readonly T[], listener: (e: PoolEventOf<T>) => void): () => void {
    const set = new Set<PoolEventType>(types);
    return this.on((e) => {
      if (set.has(e.type)) listener(e as PoolEventOf<T>);
    });
  }
}
