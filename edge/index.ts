import { createApp } from "./app.ts";
import { depsFromEnv } from "./deps.ts";
import type { Env } from "./env.ts";

export { SessionDO } from "./durable/session.ts";
export { TenantQuotaDO } from "./durable/tenant-quota.ts";
export { TunnelDO } from "./durable/tunnel.ts";

const app = createApp(depsFromEnv);

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
