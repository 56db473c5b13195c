import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, realpath, rename, rm, stat, unlink } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { posix } from "node:path";
import type { Readable } from "node:stream";
import { ListPage, type ListPageLimits, type ListPageResult } from "../../shared/list-page.ts";
import { isInside } from "./request.ts";

/**
 * File operations of the exec server, confined to the workspace. Paths are resolved here, inside
 * the pod, because only here are the symlinks a command may have planted visible: a path whose
 * real location is outside the workspace is refused whatever its spelling.
 */

export type FileErrorCode = "invalid_path" | "file_not_found" | "payload_too_large" | "invalid_request";
export type FileResult<T> =
  | { ok: true; value: T }
  | { ok: false; status: number; code: FileErrorCode; message: string };

/** The wire shape of shared/api.ts FileEntry, mirrored: this program imports nothing outside its folder. */
export interface FileEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mtime: string;
}

const fail = (status: number, code: FileErrorCode, message: string): FileResult<never> => ({
  ok: false,
  status,
  code,
  message,
});
const badPath = (message: string) => fail(400, "invalid_path", message);
const notFound = (path: string) => fail(404, "file_not_found", `${path}: no such file or directory`);

/** The lexical target of `path` (relative to the workspace, or absolute under it). */
export function lexicalTarget(workspace: string, path: string): FileResult<string> {
  if (path.length === 0 || path.length > 4096 || path.includes("\0"))
    return badPath("path: empty, too long or has NUL");
  if (path.split("/").includes("..")) return badPath(`${path}: '..' is not allowed`);
  const full = posix.resolve(workspace, path);
  if (!isInside(full, workspace)) return badPath(`${path}: outside ${workspace}`);
  return { ok: true, value: full };
}

async function realWorkspace(workspace: string): Promise<string> {
  return realpath(workspace).catch(() => workspace);
}

const isErrno = (e: unknown, code: string) =>
  typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;

/** `full` with every symlink resolved; null when it does not exist. */
async function resolveExisting(full: string): Promise<string | null> {
  try {
    return await realpath(full);
  } catch (e) {
    if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return null;
    throw e;
  }
}

/** The nearest existing ancestor of `full`, resolved. */
async function resolveAncestor(full: string): Promise<string> {
  let dir = posix.dirname(full);
  for (;;) {
    const r = await resolveExisting(dir);
    if (r !== null) return r;
    if (dir === "/") return "/";
    dir = posix.dirname(dir);
  }
}

function entryOf(name: string, st: Awaited<ReturnType<typeof lstat>>): FileEntry {
  const type = st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "dir" : "file";
  return { name, type, size: type === "file" ? Number(st.size) : 0, mtime: st.mtime.toISOString() };
}

export type ReadOutcome =
  | { kind: "file"; size: number; stream: Readable }
  | ({ kind: "dir" } & ListPageResult<FileEntry>);

export async function readPath(
  workspace: string,
  path: string,
  opts: { recursive?: boolean; page: ListPageLimits },
): Promise<FileResult<ReadOutcome>> {
  const lex = lexicalTarget(workspace, path);
  if (!lex.ok) return lex;
  const ws = await realWorkspace(workspace);
  const real = await resolveExisting(lex.value);
  if (real === null) return notFound(path);
  if (!isInside(real, ws)) return badPath(`${path}: leads outside ${workspace}`);
  const st = await stat(real);
  if (st.isDirectory()) {
    const listed = await listDir(real, opts.recursive ?? false, new ListPage<FileEntry>(opts.page));
    return { ok: true, value: { kind: "dir", ...listed } };
  }
  if (!st.isFile()) return badPath(`${path}: not a regular file`);
  return { ok: true, value: { kind: "file", size: st.size, stream: createReadStream(real) } };
}

/**
 * Breadth-first, names sorted (shared/list-page.ts order); recursive names are relative paths;
 * symlinks are listed, never followed. One page: the walk stops when it is full, and the names
 * before its cursor cost a readdir, not an lstat.
 */
async function listDir(
  root: string,
  recursive: boolean,
  page: ListPage<FileEntry>,
): Promise<ListPageResult<FileEntry>> {
  const dirs: string[] = [""];
  while (dirs.length > 0 && !page.full) {
    const rel = dirs.shift() as string;
    const found = await readdir(rel ? `${root}/${rel}` : root, { withFileTypes: true }).catch(() => []);
    const names = found
      .map((f) => ({ n: f.name, dir: f.isDirectory() }))
      .sort((a, b) => (a.n < b.n ? -1 : 1));
    for (const { n, dir } of names) {
      const name = rel ? `${rel}/${n}` : n;
      if (!page.wanted(name)) {
        if (recursive && dir) dirs.push(name);
        continue;
      }
      const st = await lstat(`${root}/${name}`).catch(() => undefined);
      if (!st) continue;
      const e = entryOf(name, st);
      if (!page.add(e)) break;
      if (recursive && e.type === "dir") dirs.push(name);
    }
  }
  return page.result();
}

/**
 * Stream `body` into a temporary file next to the target, then rename it over the target: a
 * reader sees the old file or the new one, never a torn one; of concurrent writers the last rename wins.
 */
export async function writePath(
  workspace: string,
  path: string,
  body: IncomingMessage,
  maxBytes: number,
): Promise<FileResult<{ path: string; size: number }>> {
  const lex = lexicalTarget(workspace, path);
  if (!lex.ok) return lex;
  const full = lex.value;
  const ws = await realWorkspace(workspace);
  if (full === posix.resolve(workspace)) return badPath(`${path}: is the workspace itself`);
  const ancestor = await resolveAncestor(full);
  if (!isInside(ancestor, ws)) return badPath(`${path}: leads outside ${workspace}`);
  const parent = posix.dirname(full);
  try {
    await mkdir(parent, { recursive: true });
  } catch (e) {
    if (isErrno(e, "EEXIST") || isErrno(e, "ENOTDIR")) return badPath(`${path}: a parent is not a directory`);
    throw e;
  }
  // Checked again after mkdir: the parents are now all real, and must still be ours.
  const realParent = await realpath(parent);
  if (!isInside(realParent, ws)) return badPath(`${path}: leads outside ${workspace}`);
  const existing = await lstat(full).catch(() => undefined);
  if (existing?.isDirectory()) return badPath(`${path}: is a directory`);
  const target = `${realParent}/${posix.basename(full)}`;
  const temp = `${realParent}/.${posix.basename(full)}.tmp-${randomBytes(6).toString("hex")}`;
  const written = await streamTo(body, temp, maxBytes);
  if (!written.ok) {
    await unlink(temp).catch(() => {});
    return written;
  }
  try {
    await rename(temp, target);
  } catch (e) {
    await unlink(temp).catch(() => {});
    throw e;
  }
  const shown = `/${posix.relative("/", full)}`;
  return { ok: true, value: { path: shown, size: written.value } };
}

function streamTo(body: IncomingMessage, file: string, maxBytes: number): Promise<FileResult<number>> {
  return new Promise((resolve) => {
    const declared = Number(body.headers["content-length"] ?? "NaN");
    if (Number.isFinite(declared) && declared > maxBytes) {
      body.resume();
      resolve(fail(413, "payload_too_large", `file is larger than ${maxBytes} bytes`));
      return;
    }
    const out = createWriteStream(file, { flags: "wx", mode: 0o644 });
    let size = 0;
    let done = false;
    const finish = (r: FileResult<number>) => {
      if (done) return;
      done = true;
      resolve(r);
    };
    body.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        body.unpipe(out);
        body.resume();
        out.destroy();
        finish(fail(413, "payload_too_large", `file is larger than ${maxBytes} bytes`));
      }
    });
    body.on("aborted", () => {
      out.destroy();
      finish(fail(400, "invalid_request", "the body ended early"));
    });
    out.on("error", (e) => finish(fail(400, "invalid_path", `cannot write: ${e.message}`)));
    out.on("finish", () => finish({ ok: true, value: size }));
    body.pipe(out);
  });
}

export async function removePath(workspace: string, path: string): Promise<FileResult<void>> {
  const lex = lexicalTarget(workspace, path);
  if (!lex.ok) return lex;
  const full = lex.value;
  if (full === posix.resolve(workspace)) return badPath(`${path}: is the workspace itself`);
  const ws = await realWorkspace(workspace);
  // The entry itself is removed (a symlink, not what it points at); its directory must be ours.
  const realParent = await resolveExisting(posix.dirname(full));
  if (realParent === null) return notFound(path);
  if (!isInside(realParent, ws)) return badPath(`${path}: leads outside ${workspace}`);
  const target = `${realParent}/${posix.basename(full)}`;
  const st = await lstat(target).catch(() => undefined);
  if (!st) return notFound(path);
  if (st.isDirectory()) await rm(target, { recursive: true, force: true });
  else await unlink(target);
  return { ok: true, value: undefined };
}
