/** The exec server's settings, read once from the environment at start. */
export interface ServerConfig {
  poolToken: string;
  listenHost: string;
  port: number;
  outputCapBytes: number;
  /** Commands may only run at or below this directory; /reset empties it. */
  workspace: string;
  /** Emptied by /reset alongside the workspace. */
  tmpDir: string;
  processes: ProcessLimits;
}

/** Per-pod bounds of the long-lived process table (process-table.ts). */
export interface ProcessLimits {
  /** Processes running at once. */
  maxRunning: number;
  /** Exited processes kept for their exit code and output (oldest forgotten first). */
  keepExited: number;
  /** Default output ring of one process. */
  ringBytes: number;
  /** All rings together, running and kept: a start that would pass it is refused. */
  ringTotalBytes: number;
}

export type ConfigResult = { ok: true; config: ServerConfig } | { ok: false; message: string };

function positiveInt(raw: string | undefined, fallback: number, name: string): number | string {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0)
    return `${name} must be a non-negative integer, got ${JSON.stringify(raw)}`;
  return n;
}

export function configFromEnv(env: NodeJS.ProcessEnv): ConfigResult {
  const poolToken = env.POOL_TOKEN ?? "";
  if (poolToken.length === 0) return { ok: false, message: "POOL_TOKEN is required" };
  const port = positiveInt(env.PORT, 8080, "PORT");
  if (typeof port === "string") return { ok: false, message: port };
  const cap = positiveInt(env.OUTPUT_CAP_BYTES, 1024 * 1024, "OUTPUT_CAP_BYTES");
  if (typeof cap === "string") return { ok: false, message: cap };
  const limits: Record<keyof ProcessLimits, number> = {
    maxRunning: 16,
    keepExited: 16,
    ringBytes: 1024 * 1024,
    ringTotalBytes: 32 * 1024 * 1024,
  };
  const names: Record<keyof ProcessLimits, string> = {
    maxRunning: "PROCESS_LIMIT",
    keepExited: "PROCESS_KEEP_EXITED",
    ringBytes: "PROCESS_RING_BYTES",
    ringTotalBytes: "PROCESS_RING_TOTAL_BYTES",
  };
  for (const key of Object.keys(limits) as Array<keyof ProcessLimits>) {
    const v = positiveInt(env[names[key]], limits[key], names[key]);
    if (typeof v === "string") return { ok: false, message: v };
    limits[key] = v;
  }
  if (limits.ringBytes < 1 || limits.ringBytes > limits.ringTotalBytes) {
    return { ok: false, message: "PROCESS_RING_BYTES must be from 1 to PROCESS_RING_TOTAL_BYTES" };
  }
  const workspace = env.WORKSPACE || "/workspace";
  const tmpDir = env.TMP_DIR || "/tmp";
  if (!workspace.startsWith("/") || !tmpDir.startsWith("/")) {
    return { ok: false, message: "WORKSPACE and TMP_DIR must be absolute paths" };
  }
  return {
    ok: true,
    config: {
      poolToken,
      listenHost: env.LISTEN_HOST || "0.0.0.0",
      port,
      outputCapBytes: cap,
      workspace: workspace.length > 1 ? workspace.replace(/\/+$/, "") : workspace,
      tmpDir,
      processes: limits,
    },
  };
}
