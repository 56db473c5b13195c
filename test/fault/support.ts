// Shared by the fault suite: start a small stack, call the edge the way a client does, read the
// pool straight from the API server (client-node, the stack's kubeconfig) to prove nothing leaked,
// and append each case's record to test-results/fault-report.json.
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CoordinationV1Api, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { ApiExecutor } from "../../cluster-agent/exec/api-executor.ts";
import { type Stack, type StackOptions, startStack } from "../../devstack/stack.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { waitFor } from "../support/wait-for.ts";

export { agentUrlFromLog } from "../../devstack/agents.ts";

export { waitFor };

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const RESULTS = join(REPO, "test-results");
const PARTS = join(RESULTS, "fault");
export const POOL_SELECTOR = "app.kubernetes.io/name=pi-sandbox";
export const LEADER_LEASE = "pi-sandbox-pool-leader";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FaultStack {
  stack: Stack;
  dir: string;
  namespace: string;
  poolSize: number;
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  close(): Promise<void>;
}

export async function startFaultStack(
  opts: StackOptions & { poolSize: number; extraSetup?: (dir: string) => Partial<StackOptions> },
): Promise<FaultStack> {
  const dir = mkdtempSync(join(tmpdir(), "pi-fault-"));
  const { extraSetup, ...rest } = opts;
  const stack = await startStack({
    readyTimeoutMs: 60_000,
    ...rest,
    // The elastic pool keeps what a queue on a follower made it create for the scale-down wait
    // (60 s by default; the follower's published demand lags up to ~2 s behind its queue). The leak
    // check asks for exactly POOL_SIZE free pods within its 40 s: shorten the wait, not the check.
    agentEnv: { POOL_SCALE_DOWN_AFTER_SECONDS: "5", ...rest.agentEnv },
    ...extraSetup?.(dir),
    dir,
  });
  const kc = new KubeConfig();
  kc.loadFromFile(stack.kubeconfig);
  return {
    stack,
    dir,
    namespace: stack.namespaceOf(stack.regions[0] ?? "local"),
    poolSize: opts.poolSize,
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    async close() {
      await stack.close();
      // FAULT_KEEP=1 keeps logs and state for a post-mortem.
      if (!process.env.FAULT_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What a caller of the edge received: an HTTP answer, or a transport failure. */
export interface CallerOutcome {
  status: number | null;
  code: string | null;
  requestId: string | null;
  /** Exit code for a 200 exec result. */
  exitCode?: number | null;
  /** Signal that ended the command, for a 200 exec result. */
  signal?: string | null;
  pod?: string;
  transportError?: string;
  ms: number;
}

export async function callEdge(
  f: FaultStack,
  path: string,
  init: {
    method?: string;
    token?: string;
    body?: string;
    headers?: Record<string, string>;
    timeoutMs?: number;
  },
): Promise<CallerOutcome & { json: unknown; headers: Headers | null }> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${f.stack.edgeUrl}${path}`, {
      method: init.method ?? "POST",
      headers: {
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: init.body } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 30_000),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    const env = ErrorEnvelopeSchema.safeParse(json);
    const obj = (json ?? {}) as { exitCode?: number | null; signal?: string | null; pod?: string };
    return {
      status: res.status,
      code: env.success ? env.data.error.code : null,
      requestId: res.headers.get("x-request-id"),
      ...(res.status === 200
        ? { exitCode: obj.exitCode ?? null, signal: obj.signal ?? null, ...(obj.pod ? { pod: obj.pod } : {}) }
        : {}),
      ms: Math.round(performance.now() - t0),
      json,
      headers: res.headers,
    };
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : "";
    return {
      status: null,
      code: null,
      requestId: null,
      transportError: `${e instanceof Error ? e.name : "Error"}${cause}`,
      ms: Math.round(performance.now() - t0),
      json: null,
      headers: null,
    };
  }
}

export function exec(f: FaultStack, command: string, timeoutSeconds = 30, timeoutMs = 60_000) {
  return callEdge(f, "/v1/exec", {
    token: f.stack.tokens.tenantA,
    body: JSON.stringify({ command, timeoutSeconds }),
    timeoutMs,
  });
}

/** Strip the fields a report does not need. */
export function outcome(o: CallerOutcome): CallerOutcome {
  const { status, code, requestId, exitCode, signal, pod, transportError, ms } = o;
  return {
    status,
    code,
    requestId,
    ...(exitCode !== undefined ? { exitCode } : {}),
    ...(signal ? { signal } : {}),
    ...(pod ? { pod } : {}),
    ...(transportError ? { transportError } : {}),
    ms,
  };
}

/**
 * Resolves once `path` exists in `pod`, looked at through the Kubernetes API's pods/exec (not
 * through the agent, which is busy with the pod): how a test knows a command it started through the
 * edge is running, instead of sleeping and hoping.
 */
export async function fileAppears(
  f: FaultStack,
  pod: string,
  path: string,
  timeoutMs = 30_000,
): Promise<void> {
  const api = new ApiExecutor({ kubeConfig: f.kubeConfig });
  await waitFor(
    `${path} in ${pod}`,
    async () => {
      const r = await api.exec(
        { namespace: f.namespace, pod, podIP: "", fence: 0 },
        { command: `test -e '${path}'`, timeoutMs: 10_000, signal: AbortSignal.timeout(15_000) },
      );
      return r.ok && r.value.exitCode === 0 ? true : undefined;
    },
    timeoutMs,
  );
}

/** The pod a request holds right now, read from the API (holderIdentity = `${agentId}/${requestId}`). */
export async function heldLease(
  f: FaultStack,
  timeoutMs = 10_000,
): Promise<{ pod: string; agentId: string; requestId: string }> {
  return waitFor(
    "a held lease",
    async () => {
      const leases = await f.coordination.listNamespacedLease({
        namespace: f.namespace,
        labelSelector: POOL_SELECTOR,
      });
      for (const l of leases.items) {
        const holder = l.spec?.holderIdentity;
        if (holder) {
          const slash = holder.indexOf("/");
          return {
            pod: l.metadata?.name ?? "",
            agentId: holder.slice(0, slash),
            requestId: holder.slice(slash + 1),
          };
        }
      }
      return undefined;
    },
    timeoutMs,
  );
}

export interface LeakCheck {
  /** Every pool Lease has no holder. */
  leasesFree: boolean;
  leases: number;
  /** Pool pods Ready and not terminating, as the API server has them. */
  readyPods: number;
  /** Every Lease names an existing pod and every pod has its Lease. */
  leasesMatchPods: boolean;
  /** The edge's pool snapshot: pods in state ready, and any still leased. */
  snapshotReady: number;
  snapshotLeased: number;
  /** Why the edge's snapshot could not be read (last attempt), if it could not. */
  snapshotError?: string;
  poolSize: number;
  /** How long after the check started it converged. */
  convergedMs: number;
  ok: boolean;
}

async function leakState(f: FaultStack): Promise<Omit<LeakCheck, "convergedMs" | "ok">> {
  const [leases, pods] = await Promise.all([
    f.coordination.listNamespacedLease({ namespace: f.namespace, labelSelector: POOL_SELECTOR }),
    f.core.listNamespacedPod({ namespace: f.namespace, labelSelector: POOL_SELECTOR }),
  ]);
  const live = pods.items.filter((p) => !p.metadata?.deletionTimestamp);
  const ready = live.filter((p) =>
    p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
  const podNames = new Set(live.map((p) => p.metadata?.name));
  const leaseNames = new Set(leases.items.map((l) => l.metadata?.name));
  let snapshotReady = -1;
  let snapshotLeased = -1;
  let snapshotError: string | undefined;
  try {
    const snap = (await f.stack.pools())[0];
    if (snap) {
      snapshotReady = snap.pods.filter((p) => p.state === "ready").length;
      snapshotLeased = snap.pods.filter((p) => p.state === "leased").length;
    }
  } catch (e) {
    // The edge has no agent right now: the check is simply not converged yet.
    snapshotError = e instanceof Error ? e.message.slice(0, 300) : String(e);
  }
  return {
    leasesFree: leases.items.every((l) => !l.spec?.holderIdentity),
    leases: leases.items.length,
    readyPods: ready.length,
    leasesMatchPods: podNames.size === leaseNames.size && [...podNames].every((n) => leaseNames.has(n)),
    snapshotReady,
    snapshotLeased,
    ...(snapshotError ? { snapshotError } : {}),
    poolSize: f.poolSize,
  };
}

/**
 * Waits (bounded) until the pool is whole again: poolSize Ready pods, each with its Lease, every
 * Lease free, and the agents' own snapshot agreeing. Returns the last observation either way; the
 * test asserts `ok`.
 */
export async function leakCheck(f: FaultStack, timeoutMs = 30_000): Promise<LeakCheck> {
  const t0 = Date.now();
  let last: Omit<LeakCheck, "convergedMs" | "ok"> | undefined;
  for (;;) {
    try {
      last = await leakState(f);
      const ok =
        last.leasesFree &&
        last.leases === f.poolSize &&
        last.readyPods === f.poolSize &&
        last.leasesMatchPods &&
        last.snapshotReady === f.poolSize &&
        last.snapshotLeased === 0;
      if (ok) return { ...last, convergedMs: Date.now() - t0, ok: true };
    } catch {
      // API down or restarting; keep polling until the deadline.
    }
    if (Date.now() - t0 > timeoutMs) {
      return {
        ...(last ?? {
          leasesFree: false,
          leases: -1,
          readyPods: -1,
          leasesMatchPods: false,
          snapshotReady: -1,
          snapshotLeased: -1,
          poolSize: f.poolSize,
        }),
        convergedMs: Date.now() - t0,
        ok: false,
      };
    }
    await sleep(200);
  }
}

/** Pool pod names the API server has (not terminating). */
export async function podNames(f: FaultStack): Promise<string[]> {
  const pods = await f.core.listNamespacedPod({ namespace: f.namespace, labelSelector: POOL_SELECTOR });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp).map((p) => p.metadata?.name ?? "");
}

/**
 * One case's record → test-results/fault/<case>.json, then test-results/fault-report.json is
 * rebuilt from every part (files run in parallel; a lock file serialises the rebuild).
 */
export function recordCase(name: string, data: Record<string, unknown>): void {
  mkdirSync(PARTS, { recursive: true });
  writeFileSync(
    join(PARTS, `${name}.json`),
    `${JSON.stringify({ case: name, ranAt: new Date().toISOString(), ...data }, null, 2)}\n`,
  );
  const lock = join(RESULTS, ".fault-report.lock");
  const deadline = Date.now() + 5_000;
  let fd: number | undefined;
  while (fd === undefined) {
    try {
      fd = openSync(lock, "wx");
    } catch {
      if (Date.now() > deadline) rmSync(lock, { force: true });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    const cases = readdirSync(PARTS)
      .filter((n) => n.endsWith(".json"))
      .sort()
      .map((n) => JSON.parse(readFileSync(join(PARTS, n), "utf8")) as Record<string, unknown>);
    writeFileSync(
      join(RESULTS, "fault-report.json"),
      `${JSON.stringify({ generatedAt: new Date().toISOString(), cases }, null, 2)}\n`,
    );
  } finally {
    closeSync(fd);
    rmSync(lock, { force: true });
  }
}
