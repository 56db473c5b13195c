import type { SessionDO } from "./durable/session.ts";
import type { TenantQuotaDO } from "./durable/tenant-quota.ts";
import type { TunnelDO } from "./durable/tunnel.ts";

/** Bindings from wrangler.toml; plain vars are validated by config.ts, not trusted from here. */
export interface Env {
  TUNNEL: DurableObjectNamespace<TunnelDO>;
  SESSIONS: DurableObjectNamespace<SessionDO>;
  QUOTA: DurableObjectNamespace<TenantQuotaDO>;
  FLOOD_GUARD: RateLimit;
  [name: string]: unknown;
}
