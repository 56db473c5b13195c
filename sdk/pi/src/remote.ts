// Pi's tool operations, carried out in one of our sandboxes: the local working directory stands for
// /workspace; commands stream through exec, files go through the files API, and searches (grep,
// find) run inside the pod.
import { matchesGlob } from "node:path";
import type {
  BashOperations,
  EditOperations,
  FindOperations,
  LsOperations,
  ReadOperations,
  WriteOperations,
} from "@mariozechner/pi-coding-agent";
import { type Sandbox, SandboxApiError } from "@pi-sandbox/client";
import { MAX_COMMAND_SECONDS, quote, toRemote, WORKSPACE } from "./paths.ts";

type Kind = "dir" | "file" | "missing";

async function kindOf(sandbox: Sandbox, remote: string): Promise<Kind> {
  try {
    await sandbox.files.list(remote);
    return "dir";
  } catch (e) {
    if (e instanceof SandboxApiError && e.code === "not_a_directory") return "file";
    if (e instanceof SandboxApiError && e.code === "file_not_found") return "missing";
    throw e;
  }
}

export function bashOperations(sandbox: Sandbox, localCwd: string): BashOperations {
  return {
    async exec(command, cwd, { onData, signal, timeout }) {
      const seconds = Math.min(Math.max(Math.ceil(timeout ?? MAX_COMMAND_SECONDS), 1), MAX_COMMAND_SECONDS);
      try {
        for await (const e of sandbox.execStream(command, {
          cwd: toRemote(localCwd, cwd),
          timeoutSeconds: seconds,
          ...(signal ? { signal } : {}),
        })) {
          if (e.type === "stdout" || e.type === "stderr") onData(Buffer.from(e.data));
          if (e.type === "result") {
            // The server killed the command's process group at its timeout.
            if (e.result.timedOut) throw new Error(`timeout:${timeout ?? seconds}`);
            return { exitCode: e.result.exitCode };
          }
        }
      } catch (e) {
        // Leaving the stream cancelled the command in the sandbox; Pi expects "aborted".
        if (signal?.aborted) throw new Error("aborted");
        throw e;
      }
      throw new Error("the exec stream ended without a result");
    },
  };
}

export function readOperations(sandbox: Sandbox, localCwd: string): ReadOperations {
  return {
    readFile: async (p) => Buffer.from(await sandbox.files.read(toRemote(localCwd, p))),
    access: async (p) => {
      const kind = await kindOf(sandbox, toRemote(localCwd, p));
      if (kind === "missing") throw new Error(`ENOENT: no such file or directory, access '${p}'`);
    },
  };
}

export function writeOperations(sandbox: Sandbox, localCwd: string): WriteOperations {
  return {
    writeFile: async (p, content) => {
      await sandbox.files.write(toRemote(localCwd, p), content);
    },
    mkdir: async (dir) => {
      const r = await sandbox.exec(`mkdir -p ${quote(toRemote(localCwd, dir))}`);
      if (r.exitCode !== 0) throw new Error(`mkdir ${dir}: ${r.stderr.trim()}`);
    },
  };
}

export function editOperations(sandbox: Sandbox, localCwd: string): EditOperations {
  const r = readOperations(sandbox, localCwd);
  const w = writeOperations(sandbox, localCwd);
  return { readFile: r.readFile, access: r.access, writeFile: w.writeFile };
}

export function lsOperations(sandbox: Sandbox, localCwd: string): LsOperations {
  return {
    exists: async (p) => (await kindOf(sandbox, toRemote(localCwd, p))) !== "missing",
    stat: async (p) => {
      const kind = await kindOf(sandbox, toRemote(localCwd, p));
      if (kind === "missing") throw new Error(`ENOENT: no such file or directory, stat '${p}'`);
      return { isDirectory: () => kind === "dir" };
    },
    readdir: async (p) => (await sandbox.files.list(toRemote(localCwd, p))).map((e) => e.name),
  };
}

/** The glob runs against one `find` inside the pod (VCS and dependency folders left out). */
export function findOperations(sandbox: Sandbox, localCwd: string): FindOperations {
  return {
    exists: async (p) => (await kindOf(sandbox, toRemote(localCwd, p))) !== "missing",
    glob: async (pattern, cwd, { limit }) => {
      const dir = toRemote(localCwd, cwd);
      const r = await sandbox.exec(
        `cd ${quote(dir)} && find . -mindepth 1 \\( -name .git -o -name node_modules \\) -prune -o -print`,
        { timeoutSeconds: 120 },
      );
      if (r.exitCode !== 0) throw new Error(`find in ${dir}: ${r.stderr.trim()}`);
      const out: string[] = [];
      for (const line of r.stdout.split("\n")) {
        const rel = line.replace(/^\.\//, "");
        if (rel === "" || rel === ".") continue;
        const base = rel.slice(rel.lastIndexOf("/") + 1);
        // A pattern without a slash matches a name at any depth (as fd does).
        if (matchesGlob(rel, pattern) || (!pattern.includes("/") && matchesGlob(base, pattern))) {
          out.push(rel);
          if (out.length >= limit) break;
        }
      }
      return out;
    },
  };
}

export interface GrepParams {
  pattern: string;
  path?: string;
  glob?: string;
  ignoreCase?: boolean;
  literal?: boolean;
  context?: number;
  limit?: number;
}

/** grep inside the pod; `path:line: text` lines (context lines `path-line- text`), at most `limit` matches. */
export async function grepInSandbox(sandbox: Sandbox, localCwd: string, p: GrepParams, signal?: AbortSignal) {
  const dir = toRemote(localCwd, p.path ?? ".");
  const limit = Math.max(1, Math.floor(p.limit ?? 100));
  const flags = [
    "-rnIH",
    p.ignoreCase ? "-i" : "",
    p.literal ? "-F" : "-E",
    p.context ? `-C ${Math.max(0, Math.floor(p.context))}` : "",
    p.glob ? `--include=${quote(p.glob.replace(/^\*\*\//, ""))}` : "",
    `-m ${limit}`,
    "--exclude-dir=.git --exclude-dir=node_modules",
  ]
    .filter(Boolean)
    .join(" ");
  const r = await sandbox.exec(
    `cd ${quote(WORKSPACE)} && grep ${flags} -e ${quote(p.pattern)} -- ${quote(dir)}`,
    {
      timeoutSeconds: 120,
      ...(signal ? { signal } : {}),
    },
  );
  // grep: 0 found, 1 none, 2 an error.
  if (r.exitCode === 2) throw new Error(r.stderr.trim() || "grep failed");
  const lines = r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => (l.startsWith(`${WORKSPACE}/`) ? l.slice(WORKSPACE.length + 1) : l));
  const matches = lines.filter((l) => /^[^:]+:\d+:/.test(l));
  return {
    lines: lines.slice(0, limit * (1 + 2 * (p.context ?? 0))),
    matches: matches.length,
    truncated: r.truncated,
  };
}
