import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export interface CliTarget {
  url: string;
  token: string;
  /** Where the values came from, for error messages. */
  source: string;
}

interface StackState {
  edgeUrl?: unknown;
  tokens?: { tenantA?: unknown; admin?: unknown };
}

/** `.devstack/state.json` of the local stack (`npm start`), from here or any parent directory. */
export function findStateFile(from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const f = join(dir, ".devstack", "state.json");
    if (existsSync(f)) return f;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * Flags, then PI_SANDBOX_URL / PI_SANDBOX_TOKEN, then the local stack's state file (its tenant-A
 * token, or its admin token when `admin` — the pool needs sandbox:admin). The URL and token come
 * from flags and environment, each on its own; the state file is used only when neither is given,
 * and then for both: a state file (which may be anyone's, in any parent directory) never gets to
 * point your own token at its URL, nor its token at yours.
 */
export function resolveTarget(
  flags: { url?: string | undefined; token?: string | undefined; state?: string | undefined },
  env: Record<string, string | undefined>,
  cwd: string,
  admin: boolean,
): CliTarget | { error: string } {
  const url = flags.url ?? env.PI_SANDBOX_URL;
  const token = flags.token ?? env.PI_SANDBOX_TOKEN;
  if (url && token) return { url, token, source: flags.url || flags.token ? "flags" : "environment" };
  if (url || token) {
    return {
      error: `${url ? "a URL but no token" : "a token but no URL"}: give both (--url and --token, or PI_SANDBOX_URL and PI_SANDBOX_TOKEN); a state file's values are used only together`,
    };
  }
  const file = flags.state ?? env.PI_SANDBOX_STATE ?? findStateFile(cwd);
  if (!file) {
    return {
      error:
        "no API URL or token: pass --url and --token, set PI_SANDBOX_URL and PI_SANDBOX_TOKEN, " +
        "or start the local stack (npm start writes .devstack/state.json)",
    };
  }
  let state: StackState;
  try {
    state = JSON.parse(readFileSync(file, "utf8")) as StackState;
  } catch (e) {
    return { error: `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}` };
  }
  const stateToken = admin ? state.tokens?.admin : state.tokens?.tenantA;
  if (typeof state.edgeUrl !== "string" || typeof stateToken !== "string") {
    return { error: `${file} names no edge URL and ${admin ? "admin" : "tenant"} token` };
  }
  return { url: state.edgeUrl, token: stateToken, source: file };
}
