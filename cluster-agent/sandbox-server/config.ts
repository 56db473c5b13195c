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
    },
  };
}
