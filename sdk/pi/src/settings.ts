// The extension's settings: environment variables (and the --sandbox-name flag), checked at session
// start so a missing one is named instead of failing later.
import { basename } from "node:path";

export interface PiSandboxSettings {
  url: string;
  token: string;
  name: string;
  idleTimeoutSeconds?: number;
}

/** A sandbox name from the project folder: [a-z0-9-], 1-63, as the API wants. */
export function defaultSandboxName(cwd: string): string {
  const slug = basename(cwd)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return `pi-${slug || "workspace"}`.slice(0, 63).replace(/-+$/, "");
}

/** The settings from the environment (and the --sandbox-name flag); a missing one is named. */
export function readSettings(env: NodeJS.ProcessEnv, cwd: string, nameFlag?: string): PiSandboxSettings {
  const url = env.PI_SANDBOX_URL?.trim();
  const token = env.PI_SANDBOX_TOKEN?.trim();
  if (!url) throw new Error("pi-sandbox: PI_SANDBOX_URL is not set (the sandbox API's base URL)");
  if (!token) throw new Error("pi-sandbox: PI_SANDBOX_TOKEN is not set (a tenant token for the sandbox API)");
  const idle = env.PI_SANDBOX_IDLE_TIMEOUT?.trim();
  const idleTimeoutSeconds = idle ? Number(idle) : undefined;
  if (idleTimeoutSeconds !== undefined && !(Number.isInteger(idleTimeoutSeconds) && idleTimeoutSeconds > 0)) {
    throw new Error(`pi-sandbox: PI_SANDBOX_IDLE_TIMEOUT must be whole seconds, not "${idle}"`);
  }
  return {
    url,
    token,
    name: nameFlag?.trim() || env.PI_SANDBOX_NAME?.trim() || defaultSandboxName(cwd),
    ...(idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds } : {}),
  };
}
