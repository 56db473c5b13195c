import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { Clock } from "../../cluster-agent/pool-state/clock.ts";
import type { PoolStore } from "../../cluster-agent/pool-state/pool-store.ts";
import { SandboxService, type SandboxServiceOptions } from "../../cluster-agent/sandboxes/service.ts";
import { AppError, err } from "../../shared/errors.ts";

/** A SandboxService on `store` for unit specifications: one replica, no pool to acquire from. */
export function sandboxServiceOn(
  store: PoolStore,
  clock: Clock,
  over: Partial<SandboxServiceOptions> = {},
): SandboxService {
  return new SandboxService({
    store,
    bus: new EventBus("agent-a"),
    log: { warn: () => {} },
    clock,
    namespace: "ns",
    region: "local",
    cluster: "default",
    agentId: "agent-a",
    tenantMaxSandboxes: 8,
    acquire: async () => err(new AppError("internal", "not in this test")),
    detach: async () => undefined,
    ...over,
  });
}
