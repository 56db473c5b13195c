// The agent process: the composition root. Everything else in cluster-agent/ is a module this
// file wires together; nothing here decides policy.
import { type ServerType, serve } from "@hono/node-server";
import type { KubeConfig } from "@kubernetes/client-node";
import type { DestinationStream, Logger } from "pino";
import { AppError, err, ok, type Result } from "../shared/errors.ts";
import type { Capacity } from "../shared/tunnel.ts";
import { AgentPool } from "./agent-pool.ts";
import { createChatHandler } from "./chat/index.ts";
import { type AgentConfig, loadConfig } from "./config.ts";
import { newPlaceholder } from "./egress/secrets.ts";
import type { Resolver } from "./egress/types.ts";
import { type EgressService, egressBusEvent, startEgressService } from "./egress-service.ts";
import { EventBus } from "./events/bus.ts";
import { ApiExecutor } from "./exec/api-executor.ts";
import { ApiFiles } from "./exec/api-files.ts";
import { ContractExecutor } from "./exec/contract-exec.ts";
import { ContractFiles } from "./exec/contract-files.ts";
import { ExecServerClient } from "./exec/exec-server-client.ts";
import type { Executor, SandboxFiles } from "./exec/executor.ts";
import { HttpFiles } from "./exec/files.ts";
import { HttpExecutor } from "./exec/http-executor.ts";
import { PodsExec } from "./exec/pods-exec.ts";
import { HttpPorts } from "./exec/ports.ts";
import { HttpProcesses } from "./exec/processes.ts";
import { HttpScrubber } from "./exec/scrubber.ts";
import { createAgentApp, createMetricsApp } from "./http/app.ts";
import { createRelayAuth } from "./http/relay-auth.ts";
import { loadKubeConfig, makeClients } from "./k8s/client.ts";
import { PidsLimitCheck } from "./pids-check.ts";
import { runExecRequest } from "./requests/exec-request.ts";
import { SandboxEnvSeal } from "./sandboxes/env-seal.ts";
import { cachedOpenLinks, PortLinks } from "./sandboxes/port-links.ts";
import { sandboxRoutes } from "./sandboxes/routes.ts";
import { SandboxService } from "./sandboxes/service.ts";
import { TenantReservations } from "./sandboxes/tenant-reservations.ts";
import { egressCaBundle, loadOrCreateEgressCa } from "./secrets/egress-ca.ts";
import { secretRoutes } from "./secrets/routes.ts";
import { TenantSecrets } from "./secrets/tenant-secrets.ts";
import { createLogger } from "./telemetry/logger.ts";
import { createMetrics, metricsText, subscribeMetrics } from "./telemetry/metrics.ts";
import { startTunnelClient, type TunnelClient } from "./tunnel/client.ts";

export interface RunningAgent {
  config: AgentConfig;
  pool: AgentPool;
  /** The agent's own HTTP port (health, readiness, and direct relays in tests). */
  url: string;
  /** Where `GET /metrics` is served (METRICS_PORT, on AGENT_HOST): nothing else is. */
  metricsUrl: string;
  tunnel: TunnelClient | undefined;
  /** The egress proxy (EGRESS=on), or undefined. */
  egress: EgressService | undefined;
  logger: Logger;
  close(): Promise<void>;
}

function capacityOf(pool: AgentPool): Capacity {
  const s = pool.snapshot();
  return {
    ready: s.pods.filter((p) => p.state === "ready").length,
    leased: s.pods.filter((p) => p.state === "leased").length,
    queued: s.queue.depth,
    poolSize: s.poolSize,
  };
}

/** What only tests hand the agent: the egress proxy's resolver and forbidden ranges for a fake internet. */
export interface AgentTestHooks {
  egress?: { resolve?: Resolver; forbidden?: readonly string[]; upstreamCa?: string | readonly string[] };
  /** Where the agent's log lines go (tests grep them); default stdout. */
  logDestination?: DestinationStream;
}

export async function startAgent(
  env: Record<string, string | undefined> = process.env,
  hooks: AgentTestHooks = {},
): Promise<Result<RunningAgent>> {
  const loaded = loadConfig(env);
  if (!loaded.ok) return loaded;
  const config = loaded.value;
  const logger = createLogger({
    level: config.logLevel,
    base: { agentId: config.agentId, region: config.region },
    ...(hooks.logDestination ? { destination: hooks.logDestination } : {}),
  });

  const relayPublicKeys = config.relayPublicKeys;
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const clients = makeClients(kubeConfig);
  // One client of the pods' exec servers: commands, files and scrub share its connection pool.
  const execServer = new ExecServerClient({
    poolToken: config.poolToken ?? "",
    contract: config.execMode === "pydantic-http" ? "pydantic-http" : "pi-sandbox",
  });
  const { executor, files } = modeParts(config.execMode, execServer, kubeConfig);
  const bus = new EventBus(config.agentId, config.region);
  const metrics = createMetrics({ defaultMetrics: true, defaultLabels: { region: config.region } });

  const started = await AgentPool.start({
    config,
    clients,
    bus,
    log: logger,
    ...(config.recycle !== "replace" ? { scrubber: new HttpScrubber({ client: execServer }) } : {}),
    onCacheError: (what, e, retryInMs) =>
      logger.warn({ what, err: e, retryInMs }, "watch failed; restarting"),
  });
  if (!started.ok) return started;
  const pool = started.value;
  const stopMetrics = subscribeMetrics(bus, metrics, { snapshot: () => pool.snapshot() });
  // Any replica may be handed a new pod; each opens its own connection to it while it waits.
  const stopWarming = bus.on((e) => {
    if (e.type === "pod.ready" && e.data.podIP) executor.warm?.(e.data.podIP);
  });
  // Once per agent: do sandbox pods have a process limit? (warns, metric, /v1/pool)
  const pids = new PidsLimitCheck({
    executor,
    store: pool.caches,
    bus,
    log: logger,
    namespace: config.namespace,
  });
  const acquire = pool.manager.acquire.bind(pool.manager);
  const reservations = new TenantReservations({
    clients,
    namespace: config.namespace,
    limit: config.tenantMaxSandboxes,
    // Read at reservation time, after `sandboxes` exists.
    isLive: (tenant, id) => sandboxes.has(tenant, id),
  });
  const tenantSecrets = new TenantSecrets({
    clients,
    namespace: config.secretsNamespace,
    maxPerTenant: config.maxSecretsPerTenant,
  });
  let egress: EgressService | undefined;
  let caBundle: string | undefined;
  try {
    const ca = config.egress ? await loadOrCreateEgressCa(clients, config.secretsNamespace) : undefined;
    caBundle = ca && egressCaBundle(ca);
    egress = config.egress
      ? await startEgressService({
          settings: config.egress,
          store: pool.caches,
          region: config.region,
          host: config.agentHost,
          logger,
          onEvent: (e) => {
            metrics.countEgress(e);
            bus.emit(egressBusEvent(e));
          },
          ...(ca ? { secrets: { read: (tenant: string) => tenantSecrets.values(tenant), ca } } : {}),
          ...hooks.egress,
        })
      : undefined;
  } catch (e) {
    stopMetrics();
    stopWarming();
    await pool.close();
    return err(new AppError("internal", `the egress proxy could not start: ${(e as Error).message}`));
  }
  const sandboxes: SandboxService = new SandboxService({
    store: pool.caches,
    bus,
    log: logger,
    namespace: config.namespace,
    region: config.region,
    cluster: config.clusterId,
    agentId: config.agentId,
    tenantMaxSandboxes: config.tenantMaxSandboxes,
    reservations,
    ...(config.poolToken ? { envSeal: new SandboxEnvSeal(config.poolToken) } : {}),
    acquire,
    detach: (pod) => pool.manager.detach(pod),
    ...(egress ? { egressEnv: egress.env, allowAnyHost: config.egress?.allowAnyHost ?? false } : {}),
    ...(egress?.secretEnv
      ? {
          secrets: {
            missing: (t: string, n: readonly string[]) => tenantSecrets.missing(t, n),
            env: egress.secretEnv,
            placeholder: newPlaceholder,
          },
        }
      : {}),
    endings: pool.endings,
  });

  const poolCollect = metrics.beforeCollect;
  metrics.beforeCollect = () => {
    poolCollect?.();
    metrics.sandboxes.set({ state: "ready" }, sandboxes.all().length);
  };

  // pods/exec cannot keep a process, nor can the pydantic-http contract: only http mode has them
  // (the others answer 501, and chat offers no process tools).
  const processes = config.execMode === "http" ? new HttpProcesses({ client: execServer }) : undefined;
  const ports = config.execMode === "http" ? new HttpPorts({ client: execServer }) : undefined;
  // Chat's open_port_link creates links as POST …/ports/:port/links does (that route has its own
  // PortLinks over the same sandbox service: the links live on the sandbox's Lease, not in it).
  const chatLinks = ports ? new PortLinks({ sandboxes, execServerPort: execServer.port, bus }) : undefined;
  let shuttingDown = false;
  const app = createAgentApp({
    agentId: config.agentId,
    region: config.region,
    relay: createRelayAuth({ region: config.region, publicKeys: relayPublicKeys }),
    exec: (req, ctx) =>
      runExecRequest(
        {
          acquire,
          executor,
          bus,
          log: logger,
          ...(egress ? { egressEnv: egress.env, allowAnyHost: config.egress?.allowAnyHost ?? false } : {}),
        },
        req,
        ctx,
      ),
    chat: config.model.ok
      ? createChatHandler({
          model: config.model,
          acquire,
          executor,
          bus,
          files,
          ...(processes ? { processes } : {}),
          ...(chatLinks ? { links: chatLinks } : {}),
          options: config.chat,
          log: logger,
          sandboxes,
          ...(egress ? { egressEnv: egress.env, allowAnyHost: config.egress?.allowAnyHost ?? false } : {}),
        })
      : config.model.error,
    snapshot: () => ({
      ...pool.snapshot(),
      ...(pids.result ? { sandboxPids: pids.result } : {}),
      sandboxes: sandboxes.all().map((b) => ({
        id: b.id,
        pod: b.pod,
        tenant: b.tenant,
        name: b.name ?? null,
        idleTimeoutSeconds: b.idleTimeoutSeconds,
        lastActivityAt: b.lastActivityAt,
        expiresAt: b.expiresAt,
        lastCommand: b.lastCommand ?? null,
        links: cachedOpenLinks(sandboxes, b.tenant, b.id),
      })),
    }),
    bus,
    ready: () => !shuttingDown,
    logger,
    sandboxes: {
      maxFileBytes: config.maxFileBytes,
      routes: sandboxRoutes({
        sandboxes,
        executor,
        files,
        ...(processes ? { processes } : {}),
        // Port links go through the exec server too: the other modes have none to proxy through.
        ...(ports ? { ports } : {}),
        execServerPort: execServer.port,
        bus,
        region: config.region,
        cluster: config.clusterId,
        maxFileBytes: config.maxFileBytes,
        onFileBytes: (direction, bytes) => metrics.addFileBytes(direction, bytes),
        log: logger,
        ...(caBundle ? { egressCaBundle: caBundle } : {}),
      }),
    },
    secrets: secretRoutes({ secrets: tenantSecrets, bus }),
  });

  const server = await listen(app.fetch, config.agentHost, config.agentPort);
  const url = urlOf(server, config.agentHost, config.agentPort);
  const metricsApp = createMetricsApp(() => metricsText(metrics));
  const metricsServer = await listen(metricsApp.fetch, config.agentHost, config.metricsPort);
  const metricsUrl = urlOf(metricsServer, config.agentHost, config.metricsPort);

  const tunnel = config.edgeUrl
    ? startTunnelClient({
        edgeUrl: config.edgeUrl,
        region: config.region,
        agentId: config.agentId,
        cluster: config.clusterId,
        privateJwk: config.agentKey!,
        handler: async (req) => app.fetch(req),
        capacity: () => capacityOf(pool),
        logger: {
          info: (obj, msg) => {
            logger.info(obj, msg);
            metrics.setTunnelConnected(tunnel?.state === "open");
          },
          warn: (obj, msg) => {
            logger.warn(obj, msg);
            metrics.setTunnelConnected(tunnel?.state === "open");
          },
        },
      })
    : undefined;
  logger.info(
    {
      url,
      metricsUrl,
      edge: config.edgeUrl ?? null,
      execMode: config.execMode,
      recycle: config.recycle,
      egressPort: egress?.port ?? null,
    },
    "agent started",
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      shuttingDown = true;
      await tunnel?.close();
      await egress?.close();
      // Before the pool: the check runs a command on a pool pod, and must not outlive the agent.
      await pids.stop();
      await pool.close();
      stopMetrics();
      stopWarming();
      await Promise.all(
        [server, metricsServer].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      logger.info("agent stopped");
    })();
    return closing;
  };
  return ok({ config, pool, url, metricsUrl, tunnel, egress, logger, close });
}

/** How this exec mode runs commands and file operations (files always through the same server). */
function modeParts(
  mode: AgentConfig["execMode"],
  client: ExecServerClient,
  kubeConfig: KubeConfig,
): { executor: Executor; files: SandboxFiles } {
  switch (mode) {
    case "http":
      return { executor: new HttpExecutor({ client }), files: new HttpFiles({ client }) };
    case "api": {
      // One pods/exec runner in api mode: commands and files share it.
      const podsExec = new PodsExec(kubeConfig);
      return {
        executor: new ApiExecutor({ kubeConfig, podsExec }),
        files: new ApiFiles({ kubeConfig, podsExec }),
      };
    }
    case "pydantic-http":
      return { executor: new ContractExecutor({ client }), files: new ContractFiles({ client }) };
  }
}

function listen(fetch: (req: Request) => Response | Promise<Response>, hostname: string, port: number) {
  // A port in use fails the start (thrown, like any other start failure) instead of hanging it.
  return new Promise<ServerType>((resolve, reject) => {
    const s = serve({ fetch, hostname, port }, () => resolve(s));
    s.once("error", reject);
  });
}

function urlOf(server: ServerType, host: string, configured: number): string {
  const address = server.address();
  return `http://${host}:${typeof address === "object" && address ? address.port : configured}`;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  const started = await startAgent();
  if (!started.ok) {
    console.error(`agent failed to start: [${started.error.code}] ${started.error.message}`);
    process.exit(1);
  }
  const agent = started.value;
  const stop = (signal: string) => {
    agent.logger.info({ signal }, "shutting down");
    const force = setTimeout(() => process.exit(1), 20_000);
    force.unref();
    void agent.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}
