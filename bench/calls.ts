import { agentUrlFromLog } from "../devstack/agents.ts";
import type { RegionKeys } from "../devstack/keys.ts";
import type { Stack } from "../devstack/stack.ts";
import { type ExecResult, ExecResultSchema, SCOPES } from "../shared/api.ts";
import { createRelaySigner, RELAY_HEADER, type RelaySigner, relayAudience } from "../shared/relay-signing.ts";

/** One timed request: wall time from sending to the parsed result. */
export interface Timed {
  ms: number;
  result: ExecResult;
  /** The response's Server-Timing header (edge) or server-timing (agent), if any. */
  serverTiming: string | null;
}

const REQUEST_TIMEOUT_MS = 30_000;

async function parseExec(res: Response, what: string): Promise<ExecResult> {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  const parsed = ExecResultSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${what}: not an ExecResult: ${text.slice(0, 300)}`);
  return parsed.data;
}

/** POST /v1/exec through the edge with a tenant JWT. */
export async function edgeExec(edgeUrl: string, token: string, command: string): Promise<Timed> {
  const body = JSON.stringify({ command });
  const t0 = performance.now();
  const res = await fetch(`${edgeUrl}/v1/exec`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const result = await parseExec(res, "edge /v1/exec");
  return { ms: performance.now() - t0, result, serverTiming: res.headers.get("server-timing") };
}

/**
 * The same relayed request the edge would send, straight to one agent's own port: signed with the
 * region's relay key (fresh jti each time) before the clock starts, so the figure is the agent's
 * work alone.
 */
export interface DirectAgent {
  exec(command: string): Promise<Timed>;
}

export async function directAgent(opts: {
  agentUrl: string;
  region: string;
  keys: RegionKeys;
  tenant: string;
}): Promise<DirectAgent> {
  const signer: RelaySigner = await createRelaySigner({
    privateJwk: opts.keys.relayPrivate,
    audience: relayAudience(opts.region),
  });
  let seq = 0;
  return {
    async exec(command) {
      const body = JSON.stringify({ command });
      const requestId = `bench-direct-${process.pid}-${++seq}`;
      const signature = await signer.sign({
        method: "POST",
        path: "/v1/exec",
        body,
        tenant: opts.tenant,
        subject: "bench",
        scopes: [SCOPES.exec],
        requestId,
      });
      const t0 = performance.now();
      const res = await fetch(`${opts.agentUrl}/v1/exec`, {
        method: "POST",
        headers: { [RELAY_HEADER]: signature, "content-type": "application/json", "x-request-id": requestId },
        body,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const result = await parseExec(res, "agent /v1/exec");
      return { ms: performance.now() - t0, result, serverTiming: res.headers.get("server-timing") };
    },
  };
}

/** A direct caller of the stack's first agent of `region` (the edge benches' baseline). */
export async function firstAgentDirect(stack: Stack, region: string, tenant: string): Promise<DirectAgent> {
  const agent0 = stack.agents[0];
  const keys = stack.keys[region];
  if (!agent0 || !keys) throw new Error(`stack has no agent or no keys for region ${region}`);
  return directAgent({ agentUrl: await agentUrlWhenLogged(agent0.logFile), region, keys, tenant });
}

/** The agent's own URL (agents listen on port 0), waiting for the log line that names it. */
async function agentUrlWhenLogged(logFile: string, timeoutMs = 15_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const url = agentUrlFromLog(logFile);
    if (url) return url;
    if (Date.now() > until) throw new Error(`no "agent started" line with a url in ${logFile}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface LoadOutcome<T> {
  samples: T[];
  errors: string[];
  wallMs: number;
}

/**
 * A bounded closed loop: `concurrency` clients, each sending `perClient` requests one after the
 * other, stopping early at `deadlineMs`.
 */
export async function closedLoop<T>(opts: {
  concurrency: number;
  perClient: number;
  deadlineMs: number;
  call: (client: number, i: number) => Promise<T>;
}): Promise<LoadOutcome<T>> {
  const samples: T[] = [];
  const errors: string[] = [];
  const until = Date.now() + opts.deadlineMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: opts.concurrency }, async (_, client) => {
      for (let i = 0; i < opts.perClient && Date.now() < until; i++) {
        try {
          samples.push(await opts.call(client, i));
        } catch (e) {
          errors.push(e instanceof Error ? e.message : String(e));
        }
      }
    }),
  );
  return { samples, errors, wallMs: performance.now() - t0 };
}
