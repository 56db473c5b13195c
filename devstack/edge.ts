import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { TUNNEL_ORIGIN, TUNNEL_STATS_PATH, type TunnelStats } from "../edge/relay/protocol.ts";

/**
 * The edge Worker in workerd from Node, for the local stack, the cross-process tests and the
 * benchmarks: bundled from edge/index.ts with esbuild (once per process), configured from
 * wrangler.toml (Durable Objects with SQLite, the rate-limit binding, vars), listening on
 * 127.0.0.1. `vars` override wrangler.toml's.
 */
export interface EdgeHarness {
  /** http://127.0.0.1:PORT */
  url: string;
  mf: Miniflare;
  /**
   * A region's TunnelDO accounting (requests pending, bytes held). `gc`: a full collection first,
   * where workerd's V8 runs with --expose-gc (MINIFLARE_WORKERD_V8_FLAGS), for memory tests.
   */
  tunnelStats(region: string, opts?: { gc?: boolean }): Promise<TunnelStats>;
  close(): Promise<void>;
}

export interface EdgeOptions {
  vars?: Record<string, string>;
  /** 0 (default) = any free port. */
  port?: number;
  /** Keep Durable Object storage (sessions, quotas) here, so it survives a restart of the edge. */
  persistDir?: string;
}

const root = fileURLToPath(new URL("../", import.meta.url));
let script: Promise<string> | undefined;

function bundleEdge(): Promise<string> {
  script ??= build({
    entryPoints: [`${root}edge/index.ts`],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*"],
    logLevel: "silent",
  }).then((b) => b.outputFiles[0]!.text);
  return script;
}

export async function startEdge(opts: EdgeOptions = {}): Promise<EdgeHarness> {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(`${root}wrangler.toml`);
  const base = workerOptions as Record<string, unknown>;
  const mf = new Miniflare({
    ...(base as object),
    name: "pi-sandbox-edge",
    modules: true,
    script: await bundleEdge(),
    bindings: { ...((base.bindings as Record<string, unknown>) ?? {}), ...(opts.vars ?? {}) },
    host: "127.0.0.1",
    port: opts.port ?? 0,
    cf: false,
    verbose: false,
    ...(opts.persistDir ? { durableObjectsPersist: opts.persistDir } : {}),
  } as ConstructorParameters<typeof Miniflare>[0]);
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const tunnelStats = async (region: string, opts: { gc?: boolean } = {}): Promise<TunnelStats> => {
    const ns = await mf.getDurableObjectNamespace("TUNNEL");
    const res = await ns
      .get(ns.idFromName(region))
      .fetch(`${TUNNEL_ORIGIN}${TUNNEL_STATS_PATH}${opts.gc ? "?gc=1" : ""}`);
    return (await res.json()) as TunnelStats;
  };
  return { url, mf, tunnelStats, close: () => mf.dispose() };
}
