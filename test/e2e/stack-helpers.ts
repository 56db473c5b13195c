import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import { type Stack, type StackOptions, startStack } from "../../devstack/stack.ts";
import { readSse as readSseBody, type SseMessage } from "../../shared/sse.ts";

export { agentUrlFromLog, metricsUrlFromLog } from "../../devstack/agents.ts";
export { waitFor } from "../support/wait-for.ts";
export type { SseMessage };

// Small helpers shared by the cross-process suites against the whole local stack (devstack).

/**
 * Read an SSE response to its end (or until `onMessage` returns true), calling `onMessage` per event,
 * through the shared codec (`shared/sse.ts`). Comments (": ping") are skipped. Bounded by the
 * fetch's own signal.
 */
export async function readSse(res: Response, onMessage?: (m: SseMessage) => unknown): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  // Returning early ends the generator, which cancels the body (the server sees the reader leave).
  for await (const m of readSseBody(res.body!)) {
    out.push(m);
    if (onMessage?.(m) === true) break;
  }
  return out;
}

/** A fresh temporary directory and its removal. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, "content-type": "application/json", ...extra };
}

/**
 * `fetch` against a stack's edge as a tenant (tenant A unless `token` says otherwise), JSON by
 * default, bounded by 60 s unless the caller brings its own signal. `stack` is read at each call,
 * so a suite can make the caller before its beforeAll starts the stack.
 */
export function edgeApi(stack: () => { edgeUrl: string; tokens: { tenantA: string } }) {
  return (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
    const { edgeUrl, tokens } = stack();
    const { token = tokens.tenantA, headers, ...rest } = init;
    return fetch(`${edgeUrl}${path}`, {
      ...rest,
      headers: { ...bearer(token), ...(headers as Record<string, string> | undefined) },
      signal: rest.signal ?? AbortSignal.timeout(60_000),
    });
  };
}

/**
 * Runs a program to its end with stdout and stderr collected as one string (the order a terminal
 * shows them, `out`) and apart; killed after `timeoutMs` so a hang fails the test instead of
 * stalling the suite.
 */
export function runProcess(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeoutMs: number; cleanEnv?: boolean },
): Promise<{ code: number | null; out: string; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      // cleanEnv: only what is given (no PI_SANDBOX_* of the developer's shell leaks in).
      env: opts.cleanEnv ? opts.env : { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out, stdout, stderr });
    });
  });
}

/**
 * A suite's own stack: started before its tests (in a fresh temporary directory), closed and
 * removed after them. The returned getter is the stack once started.
 */
export function suiteStack(prefix: string, opts: Omit<StackOptions, "dir">): () => Stack {
  const tmp = tempDir(prefix);
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack({ ...opts, dir: tmp.dir });
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
    tmp.remove();
  });
  return () => {
    if (!stack) throw new Error("the suite's stack is not started");
    return stack;
  };
}

/** The answer's JSON, after checking its status (the body is in the failure message when it is not). */
export async function jsonOf<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`.slice(0, 400)).toMatch(new RegExp(`^${status} `));
  return JSON.parse(text) as T;
}

/** An error answer's code (or what came instead, for the failure message). */
export async function errorCodeOf(res: Response): Promise<string> {
  const text = await res.text();
  try {
    return (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? `(status ${res.status})`;
  } catch {
    return `(status ${res.status}: ${text.slice(0, 100)})`;
  }
}
