import type { ChatHistoryMessage } from "../shared/api.ts";
import { AppError } from "../shared/errors.ts";
import { createTokenVerifier, type TokenVerifier } from "./auth/tenant-jwt.ts";
import { type EdgeConfig, loadConfig } from "./config.ts";
import { type SessionView, sessionObjectName } from "./durable/session.ts";
import type { QuotaDecision } from "./durable/tenant-quota.ts";
import type { Env } from "./env.ts";
import { durableTunnels, type TunnelDirectory } from "./relay/relay.ts";

/**
 * What the app needs from the outside world, behind small interfaces: production wires them to
 * Workers bindings (below); tests may pass their own (e.g. a flood guard that always refuses).
 */
export interface FloodGuard {
  /** False when `key` (a client IP) is over its limit. */
  allow(key: string): Promise<boolean>;
}

export interface TenantQuota {
  take(tenant: string): Promise<QuotaDecision>;
  /** Work a request did beyond its one token (a chat turn's further model calls): may go into debt. */
  charge(tenant: string, tokens: number): Promise<void>;
}

export interface SessionStore {
  read(tenant: string, sessionId: string): Promise<SessionView | null>;
  history(tenant: string, sessionId: string, limit?: number): Promise<ChatHistoryMessage[]>;
  append(
    tenant: string,
    sessionId: string,
    requestId: string,
    messages: ChatHistoryMessage[],
    /** Session mode: the session's sandbox after the turn (null: none); undefined leaves it. */
    sandboxId?: string | null,
  ): Promise<boolean>;
  /** The sandbox bound to the session by `sandbox: "session"`, or null. */
  sandboxOf(tenant: string, sessionId: string): Promise<string | null>;
  remove(tenant: string, sessionId: string): Promise<boolean>;
}

export interface EdgeDeps {
  config: EdgeConfig;
  floodGuard: FloodGuard;
  tokens: TokenVerifier;
  quota: TenantQuota;
  tunnels: TunnelDirectory;
  sessions: SessionStore;
}

const memo = new WeakMap<object, EdgeDeps>();

/** Production wiring from the Worker's env (memoised per env object). */
export function depsFromEnv(env: Env): EdgeDeps {
  const known = memo.get(env);
  if (known) return known;
  const cfg = loadConfig(env);
  if (!cfg.ok) throw new AppError("internal", cfg.message);
  const config = cfg.config;
  const session = (tenant: string, id: string) =>
    env.SESSIONS.get(env.SESSIONS.idFromName(sessionObjectName(tenant, id)));
  const deps: EdgeDeps = {
    config,
    floodGuard: {
      async allow(key) {
        const { success } = await env.FLOOD_GUARD.limit({ key });
        return success;
      },
    },
    tokens: createTokenVerifier(config.jwt),
    quota: {
      take: (tenant) =>
        env.QUOTA.get(env.QUOTA.idFromName(tenant)).take(config.quota.burst, config.quota.refillPerSecond),
      charge: (tenant, tokens) =>
        env.QUOTA.get(env.QUOTA.idFromName(tenant)).charge(
          tokens,
          config.quota.burst,
          config.quota.refillPerSecond,
        ),
    },
    tunnels: durableTunnels(env.TUNNEL as unknown as DurableObjectNamespace),
    sessions: {
      read: (t, id) => session(t, id).read(t, id),
      history: (t, id, limit) => session(t, id).history(t, id, limit),
      append: (t, id, rid, messages, sandboxId) => session(t, id).append(t, id, rid, messages, sandboxId),
      sandboxOf: (t, id) => session(t, id).sandboxOf(t, id),
      remove: (t, id) => session(t, id).remove(t, id),
    },
  };
  memo.set(env, deps);
  return deps;
}
