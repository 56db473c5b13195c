import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSandboxImage } from "../cluster-agent/sandbox-server/build.ts";
import type { AuditEntry } from "../devcluster/apiserver/index.ts";
import { type DevCluster, startDevCluster } from "../devcluster/devcluster.ts";
import type { ImageSpec } from "../devcluster/kubelet/index.ts";
import { type PoolSnapshot, PoolSnapshotSchema, SCOPES } from "../shared/api.ts";
import { type AgentReplica, startAgentReplica, tunnelConnectedInLog } from "./agents.ts";
import { type EdgeHarness, startEdge } from "./edge.ts";
import { createDevIssuer, DEV_ADMIN_SUBJECT, type DevIssuer, devTokens } from "./issuer.ts";
import { edgeKeyVars, generateRegionKeys, type RegionKeys } from "./keys.ts";
import { freePort } from "./ports.ts";

export const SANDBOX_REPO = "pi-sandbox-runtime/sandbox";
const REPO = fileURLToPath(new URL("../", import.meta.url));

export interface StackOptions {
  /** Where state, logs and the kubeconfig go (default .devstack in the repository). */
  dir?: string;
  regions?: string[];
  agentsPerRegion?: number;
  poolSize?: number;
  execMode?: "http" | "api" | "pydantic-http";
  /**
   * More devcluster images (repository → binds), e.g. a user's image for EXEC_MODE=pydantic-http
   * (then also set SANDBOX_IMAGE and SANDBOX_POD_TEMPLATE in `agentEnv`).
   */
  images?: Record<string, ImageSpec>;
  recycle?: "replace" | "scrub" | "reuse-same-tenant";
  leaseTtlSeconds?: number;
  queueTimeoutSeconds?: number;
  /** Edge port (0 = any free port). */
  edgePort?: number;
  /** Keep Durable Object storage (chat sessions) in `dir` across restarts of the edge. */
  persistEdge?: boolean;
  /** Passed to every agent (OPENAI_*, CHAT_*, LOG_LEVEL...). */
  agentEnv?: Record<string, string>;
  /** Edge vars on top of the generated ones (quotas in tests, say). */
  edgeVars?: Record<string, string>;
  readyTimeoutMs?: number;
  /**
   * Persist the devcluster API store in this file, so `cluster.restartApi()` (same port, same
   * tokens) brings back every object: the fault suite's API-server restart.
   */
  apiStateFile?: string;
  /** Every API request the devcluster serves (verb, resource, user, code), for fault tests. */
  apiAudit?: (e: AuditEntry) => void;
  /**
   * Sandboxes get a network (what their policy allows, default nothing): the agents run the egress
   * proxy (EGRESS=on) and each pod reaches the first replica's proxy at 127.0.0.1:3128 through the
   * kubelet (devcluster `egressProxy`). One region only: a kubelet has one way out, and a replica's
   * proxy knows only its own region's pods.
   */
  egress?: boolean;
  /** How often devcluster's kubelet measures emptyDirs against their sizeLimit (default 10 s). */
  evictionIntervalMs?: number;
  log?: (msg: string) => void;
}

export interface Stack {
  edgeUrl: string;
  dashboardUrl: string;
  tokens: { tenantA: string; tenantB: string; admin: string };
  kubeconfig: string;
  dir: string;
  regions: string[];
  cluster: DevCluster;
  edge: EdgeHarness;
  issuer: DevIssuer;
  keys: Record<string, RegionKeys>;
  agents: AgentReplica[];
  /** The sandbox namespace of a region. */
  namespaceOf(region: string): string;
  /** Env an extra agent replica of `region` needs (for fault tests that add or restart replicas). */
  agentEnvFor(region: string, agentId: string): Record<string, string>;
  /** Restart the edge on the same port (Durable Object storage kept when persistEdge). */
  restartEdge(): Promise<void>;
  /** Every region's pool as the edge reports it (admin token). */
  pools(): Promise<PoolSnapshot[]>;
  close(): Promise<void>;
}

/** Where a sandbox reaches the egress proxy inside its pod (the kubelet's listener). */
const POD_PROXY_PORT = 3128;
const firstAgentId = (region: string) => `agent-${region}-1`;

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const log = opts.log ?? (() => {});
  const dir = resolve(opts.dir ?? join(REPO, ".devstack"));
  const regions = opts.regions ?? ["local"];
  const namespaceOf = (region: string) => (regions.length === 1 ? "pi-sandbox" : `pi-sandbox-${region}`);
  const poolSize = opts.poolSize ?? 8;
  mkdirSync(dir, { recursive: true });
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    log("building the sandbox image");
    const image = await buildSandboxImage(join(dir, "sandbox-image"));
    log("starting devcluster");
    const clusterDir = join(dir, "cluster");
    rmSync(clusterDir, { recursive: true, force: true });
    if (opts.egress && regions.length !== 1) throw new Error("egress: one region only");
    const egressPort = opts.egress ? await freePort() : undefined;
    const cluster = await startDevCluster({
      dir: clusterDir,
      images: {
        [SANDBOX_REPO]: { binds: [{ host: image, container: "/opt/sandbox-server" }] },
        ...opts.images,
      },
      // Each region's agents keep their tenants' secrets and egress CA in a namespace of their own.
      namespaces: regions.flatMap((r) => [namespaceOf(r), `${namespaceOf(r)}-system`]),
      ...(opts.apiStateFile ? { stateFile: resolve(opts.apiStateFile) } : {}),
      ...(opts.apiAudit ? { audit: opts.apiAudit } : {}),
      ...(egressPort ? { egressProxy: { port: egressPort, podPort: POD_PROXY_PORT } } : {}),
      ...(opts.evictionIntervalMs ? { evictionIntervalMs: opts.evictionIntervalMs } : {}),
      // The kubelet's work must not hold the API server's event loop while a burst starts pods.
      kubeletProcess: true,
    });
    cleanups.push(() => cluster.close());
    // Only the agents hold it: each sandbox pod gets its own token derived from it.
    const poolToken = randomBytes(24).toString("hex");

    const keys = await generateRegionKeys(regions);
    const issuer = await createDevIssuer();
    log("starting the edge (workerd)");
    const edgeVars = {
      ENVIRONMENT: "dev",
      REGIONS: regions.join(","),
      JWT_ISSUER: issuer.issuer,
      JWT_AUDIENCE: issuer.audience,
      JWT_JWKS: JSON.stringify(issuer.jwks),
      JWT_ALGORITHMS: "EdDSA",
      ADMIN_SUBJECTS: DEV_ADMIN_SUBJECT,
      ...edgeKeyVars(keys),
      ...opts.edgeVars,
    };
    const persistDir = opts.persistEdge ? join(dir, "edge-state") : undefined;
    // Sessions survive a restart of the stack; quota buckets do not: a bucket drained in the last run
    // must not greet the next `npm start` with 429s.
    if (persistDir) dropQuotaState(persistDir);
    let edge = await startEdge({
      vars: edgeVars,
      port: opts.edgePort ?? 0,
      ...(persistDir ? { persistDir } : {}),
    });
    cleanups.push(() => edge.close());

    const agentEnvFor = (region: string, agentId: string): Record<string, string> => {
      const k = keys[region];
      if (!k) throw new Error(`no such region ${region}`);
      return {
        KUBECONFIG: cluster.kubeconfigPath,
        SANDBOX_NAMESPACE: namespaceOf(region),
        SECRETS_NAMESPACE: `${namespaceOf(region)}-system`,
        POOL_TOKEN: poolToken,
        POOL_SIZE: String(poolSize),
        REGION: region,
        AGENT_ID: agentId,
        AGENT_PORT: "0",
        METRICS_PORT: "0",
        EXEC_MODE: opts.execMode ?? "http",
        RECYCLE: opts.recycle ?? "replace",
        LEASE_TTL_SECONDS: String(opts.leaseTtlSeconds ?? 45),
        QUEUE_TIMEOUT_SECONDS: String(opts.queueTimeoutSeconds ?? 15),
        RELAY_PUBLIC_KEYS: JSON.stringify(k.relayPublic),
        EDGE_URL: edge.url,
        AGENT_KEY: JSON.stringify(k.agentPrivate),
        ...(egressPort
          ? {
              EGRESS: "on",
              // The pods' way out leads to the first replica's proxy; the others' serve nobody here.
              EGRESS_PORT: agentId === firstAgentId(region) ? String(egressPort) : "0",
              EGRESS_PROXY_URL: `http://127.0.0.1:${POD_PROXY_PORT}`,
            }
          : {}),
        ...opts.agentEnv,
      };
    };
    const agents: AgentReplica[] = [];
    cleanups.push(async () => {
      await Promise.all(agents.map((a) => a.stop()));
    });
    for (const region of regions) {
      for (let i = 1; i <= (opts.agentsPerRegion ?? 2); i++) {
        const agentId = i === 1 ? firstAgentId(region) : `agent-${region}-${i}`;
        log(`starting ${agentId}`);
        agents.push(
          await startAgentReplica({ agentId, env: agentEnvFor(region, agentId), logDir: join(dir, "logs") }),
        );
      }
    }
    const tokens = await devTokens(issuer);
    // The stack's own readiness poll has an identity (and so a quota bucket) of its own: it spends
    // nothing of the tenants' or the admin's budget.
    const healthToken = await issuer.mint({
      tenant: "devstack-health",
      subject: DEV_ADMIN_SUBJECT,
      scopes: [SCOPES.admin],
    });

    const pools = async (): Promise<PoolSnapshot[]> => {
      const res = await fetch(`${edge.url}/v1/pool`, {
        headers: { authorization: `Bearer ${healthToken}` },
        signal: AbortSignal.timeout(5_000),
      });
      if (!res.ok) throw new Error(`GET /v1/pool: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { regions?: Array<{ region: string; pool?: unknown }> };
      return (body.regions ?? []).flatMap((r) => {
        const parsed = PoolSnapshotSchema.safeParse(r.pool);
        return parsed.success ? [parsed.data] : [];
      });
    };

    log(`waiting for ${regions.length} region(s) with ${poolSize} ready pods`);
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
    let last = "";
    for (;;) {
      try {
        const snaps = await pools();
        const readyRegions = regions.filter((region) => {
          const s = snaps.find((p) => p.region === region);
          return s !== undefined && s.pods.filter((p) => p.state === "ready").length >= poolSize;
        });
        last = `${readyRegions.length}/${regions.length} regions ready`;
        if (readyRegions.length === regions.length) break;
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
      }
      if (Date.now() > deadline) throw new Error(`the stack did not become ready: ${last}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The pools answer through the first agent that connected; the stack is ready when every
    // replica can serve, or a request right after start may find only one (and lose it to a kill).
    log(`waiting for ${agents.length} agent tunnel(s)`);
    for (;;) {
      const missing = agents.filter((a) => !tunnelConnectedInLog(a.logFile)).map((a) => a.agentId);
      if (missing.length === 0) break;
      if (Date.now() > deadline)
        throw new Error(`the stack did not become ready: no tunnel from ${missing.join(", ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const edgePort = new URL(edge.url).port;
    return {
      edgeUrl: edge.url,
      dashboardUrl: `${edge.url}/dashboard`,
      tokens,
      kubeconfig: cluster.kubeconfigPath,
      dir,
      regions,
      cluster,
      edge,
      issuer,
      keys,
      agents,
      namespaceOf,
      agentEnvFor,
      pools,
      async restartEdge() {
        await edge.close();
        edge = await startEdge({
          vars: edgeVars,
          port: Number(edgePort),
          ...(persistDir ? { persistDir } : {}),
        });
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Miniflare keeps each Durable Object class in its own directory (`<worker>-<Class>`). */
function dropQuotaState(persistDir: string): void {
  if (!existsSync(persistDir)) return;
  for (const entry of readdirSync(persistDir)) {
    if (entry.endsWith("TenantQuotaDO")) rmSync(join(persistDir, entry), { recursive: true, force: true });
  }
}
