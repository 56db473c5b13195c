// Where a Pi path lands in the sandbox: Pi's working directory stands for /workspace.
import { isAbsolute, relative, resolve } from "node:path";

export const WORKSPACE = "/workspace";
/** Pi's bash tool has no default timeout; ours is the API's longest. */
export const MAX_COMMAND_SECONDS = 900;

export const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A local path (under Pi's cwd) or a /workspace path as the sandbox's path; anything else is refused. */
export function toRemote(localCwd: string, path: string): string {
  if (path === WORKSPACE || path.startsWith(`${WORKSPACE}/`)) {
    const rel = relative(WORKSPACE, resolve(path));
    if (!rel.startsWith("..")) return rel === "" ? WORKSPACE : `${WORKSPACE}/${rel}`;
  }
  const rel = relative(localCwd, resolve(localCwd, path));
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new Error(`Path is outside the sandbox workspace: ${path}`);
  }
  return rel === "" ? WORKSPACE : `${WORKSPACE}/${rel}`;
}
