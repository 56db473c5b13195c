import { realpath, stat } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { posix } from "node:path";
import type { ExecRequestBody } from "./protocol.ts";

/** Mirrors shared/api.ts LIMITS; duplicated because this program imports nothing outside its folder. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
export const MAX_COMMAND_BYTES = 64 * 1024;
export const MAX_STDIN_BYTES = 1024 * 1024;
const MAX_TIMEOUT_MS = 900_000;
export const MAX_ENV_ENTRIES = 64;
export const MAX_ENV_VALUE_BYTES = 32 * 1024;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export type ExecBody = ExecRequestBody;

export type Parsed<T> = { ok: true; value: T } | { ok: false; status: 400 | 413; message: string };

/** Reads the whole body, refusing (413) as soon as it passes the limit rather than buffering it all. */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Parsed<Buffer>> {
  return new Promise((resolve) => {
    const declared = Number(req.headers["content-length"] ?? "NaN");
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      resolve({ ok: false, status: 413, message: `request body is larger than ${limit} bytes` });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        resolve({ ok: false, status: 413, message: `request body is larger than ${limit} bytes` });
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      resolve({ ok: true, value: Buffer.concat(chunks) });
    });
    req.on("error", () => {
      if (done) return;
      done = true;
      resolve({ ok: false, status: 400, message: "request body could not be read" });
    });
  });
}

const bad = (message: string): Parsed<never> => ({ ok: false, status: 400, message });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates an /exec body by hand (no dependencies here); every refusal names the field. */
export function parseExecBody(raw: Buffer, workspace: string): Parsed<ExecBody> {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString("utf8"));
  } catch {
    return bad("body: not valid JSON");
  }
  if (!isPlainObject(json)) return bad("body: must be a JSON object");
  for (const key of Object.keys(json)) {
    if (!["command", "timeoutMs", "stdin", "cwd", "env"].includes(key)) return bad(`${key}: unknown field`);
  }
  const { command, timeoutMs, stdin, cwd, env } = json;
  if (typeof command !== "string" || command.length === 0) return bad("command: must be a non-empty string");
  if (Buffer.byteLength(command) > MAX_COMMAND_BYTES)
    return bad(`command: longer than ${MAX_COMMAND_BYTES} bytes`);
  if (
    typeof timeoutMs !== "number" ||
    !Number.isInteger(timeoutMs) ||
    timeoutMs < 1 ||
    timeoutMs > MAX_TIMEOUT_MS
  ) {
    return bad(`timeoutMs: must be an integer from 1 to ${MAX_TIMEOUT_MS}`);
  }
  const body: ExecBody = { command, timeoutMs };
  if (stdin !== undefined) {
    if (typeof stdin !== "string") return bad("stdin: must be a string");
    if (Buffer.byteLength(stdin) > MAX_STDIN_BYTES) return bad(`stdin: longer than ${MAX_STDIN_BYTES} bytes`);
    body.stdin = stdin;
  }
  if (cwd !== undefined) {
    const checked = checkCwd(cwd, workspace);
    if (typeof checked !== "string") return checked;
    body.cwd = checked;
  }
  if (env !== undefined) {
    if (!isPlainObject(env)) return bad("env: must be an object of strings");
    const entries = Object.entries(env);
    if (entries.length > MAX_ENV_ENTRIES) return bad(`env: at most ${MAX_ENV_ENTRIES} variables`);
    const out: Record<string, string> = {};
    for (const [k, v] of entries) {
      if (!ENV_NAME.test(k)) return bad(`env.${k}: names are [A-Za-z_][A-Za-z0-9_]*`);
      if (typeof v !== "string") return bad(`env.${k}: must be a string`);
      if (Buffer.byteLength(v) > MAX_ENV_VALUE_BYTES)
        return bad(`env.${k}: longer than ${MAX_ENV_VALUE_BYTES} bytes`);
      out[k] = v;
    }
    body.env = out;
  }
  return { ok: true, value: body };
}

/** Lexical check; the caller also resolves symlinks before running anything there. */
export function checkCwd(cwd: unknown, workspace: string): string | Parsed<never> {
  if (typeof cwd !== "string" || cwd.length === 0 || cwd.length > 1024)
    return bad("cwd: must be a path string");
  if (!cwd.startsWith("/")) return bad("cwd: must be an absolute path");
  if (cwd.split("/").includes("..")) return bad("cwd: must not contain '..'");
  const normal = posix.normalize(cwd).replace(/(.)\/+$/, "$1");
  if (!isInside(normal, workspace)) return bad(`cwd: must be ${workspace} or below it`);
  return normal;
}

/**
 * The cwd a command may run in: `cwd` (already lexically checked) or the workspace, resolved through
 * symlinks, an existing directory, and still inside the workspace after resolution.
 */
export async function resolveCwd(cwd: string | undefined, workspace: string): Promise<Parsed<string>> {
  const wanted = cwd ?? workspace;
  const resolved = await realpath(wanted).catch(() => undefined);
  const isDir = resolved !== undefined && (await stat(resolved).catch(() => undefined))?.isDirectory();
  if (resolved === undefined || !isDir) return bad(`cwd: ${wanted} is not an existing directory`);
  if (!isInside(resolved, await realpath(workspace).catch(() => workspace))) {
    return bad(`cwd: ${wanted} leads outside ${workspace}`);
  }
  return { ok: true, value: resolved };
}

export function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);
}
