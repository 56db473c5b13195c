import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { importJWK, type JWK, SignJWT } from "jose";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import {
  AGENT_PRIVATE_JWKS,
  RELAY_PUBLIC_JWKS,
  TENANT_ISSUER_PRIVATE_JWK,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "../workers/fixtures/test-keys.ts";

/**
 * Start the edge Worker in workerd from Node, for cross-process tests: bundled from edge/index.ts
 * with esbuild, configured from wrangler.toml (Durable Objects with SQLite, the rate-limit
 * binding, the dev/test vars and keys of test/workers/fixtures/test-keys.ts), listening on
 * 127.0.0.1 with a free port. `vars` override wrangler.toml vars.
 */
export interface EdgeHarness {
  /** http://127.0.0.1:PORT */
  url: string;
  mf: Miniflare;
  close(): Promise<void>;
}

const root = fileURLToPath(new URL("../../", import.meta.url));

export async function startEdge(opts: { vars?: Record<string, string> } = {}): Promise<EdgeHarness> {
  const bundle = await build({
    entryPoints: [`${root}edge/index.ts`],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*"],
    logLevel: "silent",
  });
  const script = bundle.outputFiles[0]!.text;
  const { workerOptions } = unstable_getMiniflareWorkerOptions(`${root}wrangler.toml`);
  const base = workerOptions as Record<string, unknown>;
  const mf = new Miniflare({
    ...(base as object),
    name: "pi-sandbox-edge",
    modules: true,
    script,
    bindings: { ...((base.bindings as Record<string, unknown>) ?? {}), ...(opts.vars ?? {}) },
    host: "127.0.0.1",
    port: 0,
    cf: false,
    verbose: false,
  } as ConstructorParameters<typeof Miniflare>[0]);
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    url,
    mf,
    close: () => mf.dispose(),
  };
}

/** A tenant JWT the harnessed edge accepts (test issuer key); `claims` override the defaults. */
export async function testTenantToken(claims: Record<string, unknown> = {}): Promise<string> {
  const key = await importJWK(TENANT_ISSUER_PRIVATE_JWK, "RS256");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: TEST_ISSUER,
    aud: TEST_AUDIENCE,
    sub: "test-user",
    iat: now,
    exp: now + 600,
    tenant: "tenant-test",
    scope: "sandbox:exec sandbox:chat sandbox:admin",
    ...claims,
  })
    .setProtectedHeader({ alg: "RS256", kid: TENANT_ISSUER_PRIVATE_JWK.kid! })
    .sign(key);
}

/** Keys an agent process needs to join the harnessed edge as `region` (eu-1 or us-1). */
export function testAgentKeys(region: string): { agentPrivateJwk: JWK; relayPublicKeys: { keys: JWK[] } } {
  const agentPrivateJwk = AGENT_PRIVATE_JWKS[region];
  const relayPublicKeys = RELAY_PUBLIC_JWKS[region];
  if (!agentPrivateJwk || !relayPublicKeys) throw new Error(`no test keys for region ${region}`);
  return { agentPrivateJwk, relayPublicKeys };
}
