import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAgentBundle } from "../cluster-agent/build.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));

let bundled: Promise<string> | undefined;
/**
 * cluster-agent/main.ts bundled once (node_modules external), the way the agent image ships it
 * (the same cluster-agent/build.ts): starting replicas through a TypeScript loader would cost
 * seconds each on a 2-core machine.
 */
export function agentEntry(): Promise<string> {
  bundled ??= buildAgentBundle(join(REPO, "dist", "agent", "main.mjs")).then((b) => b.outfile);
  return bundled;
}

export interface AgentReplica {
  agentId: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** As a crash would: no cleanup at all. */
  kill(): void;
}

export async function startAgentReplica(opts: {
  agentId: string;
  env: Record<string, string>;
  logDir: string;
}): Promise<AgentReplica> {
  const entry = await agentEntry();
  mkdirSync(opts.logDir, { recursive: true });
  const logFile = join(opts.logDir, `${opts.agentId}.log`);
  const log = createWriteStream(logFile, { flags: "a" });
  // setpriv --pdeathsig: a replica never outlives the stack that started it (Ctrl-C, crash, SIGKILL).
  const child = spawn(
    "setpriv",
    ["--pdeathsig", "SIGTERM", "--", process.execPath, "--enable-source-maps", entry],
    {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...opts.env, AGENT_ID: opts.agentId },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  exited.finally(() => log.end());
  return {
    agentId: opts.agentId,
    child,
    logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
    kill() {
      child.kill("SIGKILL");
    },
  };
}

/** Whether the replica's log says its tunnel to the edge is up (its "tunnel: connected" line). */
export function tunnelConnectedInLog(logFile: string): boolean {
  try {
    return readFileSync(logFile, "utf8").includes('"tunnel: connected"');
  } catch {
    return false;
  }
}

/** A replica's own URL (health, readiness, direct relays), from the "agent started" line of its log. */
export function agentUrlFromLog(logFile: string): string | undefined {
  return startedField(logFile, "url");
}

/** Where a replica serves `GET /metrics` (METRICS_PORT), from the same line. */
export function metricsUrlFromLog(logFile: string): string | undefined {
  return startedField(logFile, "metricsUrl");
}

function startedField(logFile: string, field: "url" | "metricsUrl"): string | undefined {
  let text: string;
  try {
    text = readFileSync(logFile, "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n").reverse()) {
    if (!line.includes('"agent started"')) continue;
    try {
      const v = (JSON.parse(line) as Record<string, unknown>)[field];
      if (typeof v === "string") return v;
    } catch {
      // a partial line
    }
  }
  return undefined;
}
