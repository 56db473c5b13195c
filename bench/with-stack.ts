import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpExecutor } from "../cluster-agent/exec/http-executor.ts";
import { type Stack, type StackOptions, startStack } from "../devstack/stack.ts";
import { type PodSnapshot, SCOPES } from "../shared/api.ts";

/**
 * Quotas high enough that the edge's per-tenant token bucket never throttles a benchmark (the
 * defaults would 429 after a burst of 20): we measure the path, not the policy. The bucket is
 * still consulted on every request, so its cost stays in the figures.
 */
export const BENCH_EDGE_VARS = { TENANT_QUOTA_BURST: "1000000", TENANT_QUOTA_PER_MINUTE: "1000000" };
/** The per-tenant lease cap (default 4 per replica) would otherwise cap one tenant below the pool size. */
export const BENCH_AGENT_ENV = { TENANT_MAX_LEASES: "1000", LOG_LEVEL: "info" };

/** Emergency stops of the stacks still running, for a signal (`finally` blocks do not run then). */
const open = new Set<() => void>();

/**
 * Synchronous on purpose: Miniflare's own exit hook calls process.exit on SIGINT/SIGTERM right
 * after the listeners before it, so there is no time for async work. Agents get SIGTERM (they
 * stop on their own), the temp dir goes; workerd and the sandboxes die with this process.
 */
export function killAllStacksNow(): void {
  for (const kill of open) kill();
}

/** A full local stack in a temp dir for the length of `fn`; always stopped and removed. */
export async function withStack<T>(opts: StackOptions, fn: (stack: Stack) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "bench-stack-"));
  let stack: Stack | undefined;
  const killNow = () => {
    for (const a of stack?.agents ?? []) a.child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  open.add(killNow);
  try {
    stack = await startStack({
      readyTimeoutMs: 180_000,
      ...opts,
      dir,
      edgeVars: { ...BENCH_EDGE_VARS, ...opts.edgeVars },
      agentEnv: { ...BENCH_AGENT_ENV, ...opts.agentEnv },
    });
    return await fn(stack);
  } finally {
    open.delete(killNow);
    await stack?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Free Ready pods of the first region, as the edge reports them. */
export async function readyPods(stack: Stack): Promise<PodSnapshot[]> {
  const [snap] = await stack.pools();
  return (snap?.pods ?? []).filter((p) => p.state === "ready" && p.podIP !== null);
}

/** Waits (bounded) until the pool is full and idle again, so one measurement does not bleed into the next. */
export async function waitForFullPool(stack: Stack, poolSize: number, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const n = (await readyPods(stack).catch(() => [])).length;
    if (n >= poolSize) return;
    if (Date.now() > until) throw new Error(`pool did not return to ${poolSize} ready pods (have ${n})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Until the first region's pods are `poolSize`, all free and Ready; ms since `from` (NaN on timeout). */
export async function backToPoolSize(
  stack: Stack,
  poolSize: number,
  from: number,
  timeoutMs: number,
  pollMs = 250,
): Promise<number> {
  for (;;) {
    const [snap] = await stack.pools().catch(() => []);
    const pods = snap?.pods ?? [];
    if (pods.length === poolSize && pods.every((p) => p.state === "ready")) return Date.now() - from;
    if (Date.now() - from > timeoutMs) return Number.NaN;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export const progress = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

/**
 * The floor of an exec through the system: the agent's own http executor running `true` on one
 * idle pool pod (its current fence; no lease taken, so run it while nothing else uses the pool).
 */
export async function podExecSamples(stack: Stack, n: number, region = "local"): Promise<number[]> {
  const pod = (await readyPods(stack))[0];
  if (!pod?.podIP) throw new Error("no ready pod for the pod-exec floor");
  const executor = new HttpExecutor({ poolToken: stack.agentEnvFor(region, "bench").POOL_TOKEN ?? "" });
  const target = {
    namespace: stack.namespaceOf(region),
    pod: pod.name,
    podIP: pod.podIP,
    fence: pod.transitions,
  };
  const out: number[] = [];
  for (let i = 0; i < n + 5; i++) {
    const t0 = performance.now();
    const r = await executor.exec(target, {
      command: "true",
      timeoutMs: 10_000,
      signal: AbortSignal.timeout(20_000),
    });
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`pod exec floor: ${r.error.code} ${r.error.message}`);
    if (r.value.exitCode !== 0) throw new Error(`pod exec floor: \`true\` exited ${r.value.exitCode}`);
    if (i >= 5) out.push(ms);
  }
  return out;
}

/**
 * A bench tenant's JSON caller of the stack's edge (one sandbox:exec token): a non-2xx answer
 * throws with its status and the start of its body.
 */
export async function edgeJsonCaller(stack: Stack): Promise<{
  headers: Record<string, string>;
  call: <T>(method: string, path: string, body?: string) => Promise<T>;
}> {
  const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const call = async <T>(method: string, path: string, body?: string): Promise<T> => {
    const res = await fetch(`${stack.edgeUrl}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body } : {}),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 200)}`);
    return JSON.parse(text) as T;
  };
  return { headers, call };
}

/**
 * The small stack of the per-feature suites (processes, port links): http exec mode, one agent, a
 * pool of 2 Ready pods, and the bench tenant's JSON caller.
 */
export function withSmallStack<T>(
  suite: string,
  fn: (stack: Stack, edge: Awaited<ReturnType<typeof edgeJsonCaller>>) => Promise<T>,
): Promise<T> {
  return withStack(
    {
      execMode: "http",
      poolSize: 2,
      agentsPerRegion: 1,
      edgeVars: { ...BENCH_EDGE_VARS },
      agentEnv: { ...BENCH_AGENT_ENV },
    },
    async (stack) => {
      progress(`${suite}: stack up`);
      await waitForFullPool(stack, 2);
      return fn(stack, await edgeJsonCaller(stack));
    },
  );
}

/** The exec-server target of a sandbox's pod (the floors' direct calls) and the pool token they use. */
export async function sandboxTarget(
  stack: Stack,
  podName: string,
  region = "local",
): Promise<{ target: { namespace: string; pod: string; podIP: string; fence: number }; poolToken: string }> {
  const pod = (await stack.pools())[0]?.pods.find((p) => p.name === podName);
  if (!pod?.podIP) throw new Error("the sandbox's pod is not in the pool snapshot");
  return {
    target: { namespace: stack.namespaceOf(region), pod: pod.name, podIP: pod.podIP, fence: pod.transitions },
    poolToken: stack.agentEnvFor(region, "bench").POOL_TOKEN ?? "",
  };
}
