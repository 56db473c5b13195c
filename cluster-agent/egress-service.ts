import type { V1Lease } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { EgressSettings } from "./config.ts";
import { createEgressProxy, type EgressProxy } from "./egress/proxy.ts";
import { caBundleEnv, sandboxProxyEnv } from "./egress/sandbox-env.ts";
import type { EgressEvent, Resolver } from "./egress/types.ts";
import type { CertificateAuthority } from "./egress/x509.ts";
import type { PoolEventInput } from "./events/bus.ts";
import type { PoolStore } from "./pool-state/pool-store.ts";
import { isSandboxLease, SANDBOX_ANNOTATIONS } from "./pool-state/sandbox-record.ts";
import {
  egressSubjectOf,
  sandboxEgressLookup,
  type TenantSecretReader,
} from "./sandboxes/egress-identity.ts";

export interface EgressServiceOptions {
  settings: EgressSettings;
  store: Pick<PoolStore, "pods" | "leases">;
  region: string;
  /** Where the proxy listens (AGENT_HOST). */
  host: string;
  logger: Logger;
  /** Each ended connection, after it is logged (metrics). */
  onEvent?: (e: EgressEvent) => void;
  /** Tests map their fake internet's names; production uses the system resolver. */
  resolve?: Resolver;
  /** Tests replace the forbidden ranges to reach a fake internet on loopback; never a setting. */
  forbidden?: readonly string[];
  /** Tests trust their fake internet's CA for intercepted upstreams; production uses Node's roots. */
  upstreamCa?: string | readonly string[];
  /** The tenants' stored secrets and the cluster CA: without both, nothing is intercepted. */
  secrets?: { read: TenantSecretReader; ca: CertificateAuthority };
}

export interface EgressService {
  proxy: EgressProxy;
  /** The proxy variables every sandbox command gets. */
  env: Readonly<Record<string, string>>;
  /**
   * The env of a sandbox that uses secrets: its placeholders, and the CA variables pointing at
   * `caBundleFile` (written into its pod when it was created). Undefined without secrets support.
   */
  secretEnv?: (placeholders: ReadonlyMap<string, string>, caBundleFile: string) => Record<string, string>;
  /** Where the proxy listens (the port it got). */
  port: number;
  close(): Promise<void>;
}

/** The bus event of one ended connection: destinations, decision, bytes; never a header or value. */
export function egressBusEvent(e: EgressEvent): PoolEventInput {
  const common = {
    sandboxId: e.sandbox ?? null,
    host: e.host,
    port: e.port,
    mode: e.mode,
    bytesUp: e.bytesUp,
    bytesDown: e.bytesDown,
    durationMs: e.durationMs,
  };
  const who = e.tenant !== undefined ? { tenant: e.tenant } : {};
  return e.decision === "allowed"
    ? { type: "egress.allowed", ...who, data: { ...common, ...(e.closedBy ? { closedBy: e.closedBy } : {}) } }
    : {
        type: "egress.denied",
        ...who,
        data: {
          ...common,
          reason: e.reason ?? "egress_not_allowed",
          ...(e.message !== undefined ? { message: e.message } : {}),
        },
      };
}

const networkOf = (l: V1Lease | undefined) => l?.metadata?.annotations?.[SANDBOX_ANNOTATIONS.network];

/**
 * The egress proxy in the agent process: it identifies callers through this replica's pod and
 * Lease caches (every replica watches every pool pod, so any replica's proxy serves any sandbox),
 * and closes what a change forbids whichever replica made it: a sandbox's policy replaced, its
 * Lease gone or handed on, its pod gone or given another address all re-check open connections.
 */
export async function startEgressService(o: EgressServiceOptions): Promise<EgressService> {
  const proxy = createEgressProxy({
    lookup: sandboxEgressLookup(o.store, o.region, o.secrets?.read, {
      allowAnyHost: o.settings.allowAnyHost,
    }),
    ...(o.secrets ? { ca: o.secrets.ca } : {}),
    ...(o.upstreamCa ? { upstreamCa: o.upstreamCa } : {}),
    onEvent: (e) => {
      o.logger.info({ egress: e }, `egress ${e.decision} ${e.host}:${e.port}`);
      o.onEvent?.(e);
    },
    forbidden: o.forbidden ?? o.settings.forbidden,
    maxConnectionsPerSandbox: o.settings.maxConnectionsPerSandbox,
    ...(o.settings.maxBytesPerSandbox ? { maxBytesPerSandbox: o.settings.maxBytesPerSandbox } : {}),
    ...(o.resolve ? { resolve: o.resolve } : {}),
  });
  const bound = await proxy.listen(o.settings.port, o.host);
  const podIp = o.settings.podIp ?? "";
  const proxyUrl =
    o.settings.proxyUrl ?? `http://${podIp.includes(":") ? `[${podIp}]` : podIp}:${bound.port}`;

  // One revalidation at a time; changes during one ask for one more after it.
  let running: Promise<void> | undefined;
  let again = false;
  const revalidate = () => {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        const closed = await proxy.revalidate().catch(() => 0);
        if (closed > 0) o.logger.info({ closed }, "egress: closed connections a change no longer allows");
      } while (again);
      running = undefined;
    })();
  };
  // A sandbox's Lease, or a pod held for one call with a policy of its own.
  const matters = (l: V1Lease | undefined) => isSandboxLease(l) || networkOf(l) !== undefined;
  const stopLeases = o.store.leases.onChange((c) => {
    const before = c.type === "update" ? c.old : c.type === "delete" ? c.obj : undefined;
    if (!matters(c.obj) && !matters(before)) return;
    const holderChanged = c.type === "update" && c.old.spec?.holderIdentity !== c.obj.spec?.holderIdentity;
    if (before && (c.type === "delete" || holderChanged)) {
      const subject = egressSubjectOf(before);
      if (subject) proxy.forget(subject.tenant, subject.sandbox);
    }
    if (
      c.type === "delete" ||
      holderChanged ||
      (c.type === "update" && networkOf(c.old) !== networkOf(c.obj))
    )
      revalidate();
  });
  // A pod gone, readdressed, or a new one claiming an address in use (which makes it nobody's).
  const stopPods = o.store.pods.onChange((c) => {
    if (
      c.type === "delete" ||
      (c.type === "add" && c.obj.status?.podIP) ||
      (c.type === "update" && c.old.status?.podIP !== c.obj.status?.podIP)
    )
      revalidate();
  });
  o.logger.info({ port: bound.port, proxyUrl }, "egress proxy listening");
  return {
    proxy,
    env: sandboxProxyEnv({ proxyUrl }),
    ...(o.secrets
      ? {
          secretEnv: (placeholders, caBundleFile) => ({
            ...caBundleEnv(caBundleFile),
            ...Object.fromEntries(placeholders),
          }),
        }
      : {}),
    port: bound.port,
    close: async () => {
      stopLeases();
      stopPods();
      await proxy.close();
      await running;
    },
  };
}
