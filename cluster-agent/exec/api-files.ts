import { posix } from "node:path";
import { Writable } from "node:stream";
import type { KubeConfig } from "@kubernetes/client-node";
import { type FileEntry, SANDBOX_LIMITS } from "../../shared/api.ts";
import { AppError, type ErrorCode, err, ok, type Result } from "../../shared/errors.ts";
import { ListSelection } from "../../shared/list-page.ts";
import type { ExecTarget, FileListing, ListOptions, ReadResult, SandboxFiles } from "./executor.ts";
import { exitCodeOf, PodsExec } from "./pods-exec.ts";
import { sizedStdin } from "./remote-wrapper.ts";

/**
 * The files contract as small POSIX shell programs, each operation one run (the path and limits
 * travel as positional arguments, never spliced into the script; a write's bytes travel on
 * stdin). They resolve the path inside the pod with `realpath`, like the exec server, and answer
 * with the same error codes. Reads are buffered here (at most the file limit). `ShellFiles` holds
 * the operations; how a program runs is its subclass's: `ApiFiles` over pods/exec (`api` mode),
 * `ContractFiles` (contract-files.ts) through a pydantic-http exec server's `/exec`.
 */

const EXIT: Record<number, ErrorCode> = { 65: "invalid_path", 66: "file_not_found" };

/** Sets `full` (lexical) and `ws` (real workspace); refuses `..` and anything lexically outside. */
const PRELUDE = [
  "p=$1; ws=$(realpath /workspace)",
  'case "/$p/" in */../*) echo "$p: .. is not allowed" >&2; exit 65;; esac',
  'case "$p" in /*) full=$p;; *) full=/workspace/$p;; esac',
  'case "$full" in /workspace|/workspace/*) ;; *) echo "$p: outside /workspace" >&2; exit 65;; esac',
  'inside() { case "$1" in "$ws"|"$ws"/*) return 0;; *) return 1;; esac; }',
].join("\n");

const READ_SCRIPT = [
  PRELUDE,
  'r=$(realpath -e -- "$full" 2>/dev/null) || { echo "$p: no such file or directory" >&2; exit 66; }',
  'inside "$r" || { echo "$p: leads outside /workspace" >&2; exit 65; }',
  'if [ -d "$r" ]; then',
  '  printf "D\\n"',
  '  [ "$2" = 1 ] || exec find "$r" -mindepth 1 -maxdepth 1 -printf "%y %s %T@ %P\\0"',
  // Recursive: one level at a time (the listing's order is by depth first), from the cursor's
  // depth ($3: every shallower name sorts before it). A level's records go out as find writes
  // them (tee to fd 3) while they are counted; once the levels from $4 on (wholly past the cursor)
  // hold more than $5 entries or $6 record bytes (a record is never longer than its entry's
  // JSON), the page is full without anything deeper, and nothing deeper is walked.
  "  k=$3; from=$4; maxn=$5; maxb=$6; n=0; b=0; exec 3>&1",
  "  while :; do",
  '    set -- $( { { find "$r" -mindepth "$k" -maxdepth "$k" -printf "%y %s %T@ %P\\0"; echo "$?" >&4; } | tee /dev/fd/3 | tr "\\n\\000" "_\\n" | wc -lc; } 4>&1 )',
  '    [ "$1" -eq 0 ] || exit "$1"',
  '    [ "$2" -eq 0 ] && exit 0',
  '    if [ "$k" -ge "$from" ]; then n=$((n + $2)); b=$((b + $3)); fi',
  '    if [ "$n" -gt "$maxn" ] || [ "$b" -gt "$maxb" ]; then exit 0; fi',
  "    k=$((k + 1))",
  "  done",
  'elif [ -f "$r" ]; then printf "F\\n"; exec cat -- "$r"',
  'else echo "$p: not a regular file" >&2; exit 65; fi',
].join("\n");

const WRITE_SCRIPT = [
  PRELUDE,
  // Exactly $2 bytes: the script never waits for end-of-file, which a v4 exec stream cannot send.
  "n=$2",
  '[ "$full" = /workspace ] && { echo "$p: is the workspace itself" >&2; exit 65; }',
  'parent=$(dirname -- "$full"); base=$(basename -- "$full")',
  'a=$parent; while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname -- "$a"); done',
  'ra=$(realpath -e -- "$a" 2>/dev/null) && inside "$ra" || { echo "$p: leads outside /workspace" >&2; exit 65; }',
  'mkdir -p -- "$parent" 2>/dev/null || { echo "$p: a parent is not a directory" >&2; exit 65; }',
  'rp=$(realpath -e -- "$parent") && inside "$rp" || { echo "$p: leads outside /workspace" >&2; exit 65; }',
  'if [ -d "$rp/$base" ] && [ ! -L "$rp/$base" ]; then echo "$p: is a directory" >&2; exit 65; fi',
  'tmp="$rp/.$base.tmp-$$"',
  'head -c "$n" > "$tmp" || { rm -f -- "$tmp"; echo "$p: cannot write" >&2; exit 65; }',
  'size=$(wc -c < "$tmp")',
  'if [ "$size" -ne "$n" ]; then rm -f -- "$tmp"; echo "$p: stdin ended after $size of $n bytes" >&2; exit 68; fi',
  // -T: a target that is a symlink (even to a directory) is replaced, never written through.
  'mv -fT -- "$tmp" "$rp/$base" || { rm -f -- "$tmp"; exit 65; }',
  'echo "$size"',
].join("\n");

const REMOVE_SCRIPT = [
  PRELUDE,
  '[ "$full" = /workspace ] && { echo "$p: is the workspace itself" >&2; exit 65; }',
  'rp=$(realpath -e -- "$(dirname -- "$full")" 2>/dev/null) || { echo "$p: no such file or directory" >&2; exit 66; }',
  'inside "$rp" || { echo "$p: leads outside /workspace" >&2; exit 65; }',
  't="$rp/$(basename -- "$full")"',
  '[ -e "$t" ] || [ -L "$t" ] || { echo "$p: no such file or directory" >&2; exit 66; }',
  'rm -rf -- "$t"',
].join("\n");

/** Defaults of every files implementation that buffers: one operation's time, the largest read. */
export const FILES_DEFAULTS = { timeoutMs: 120_000, maxReadBytes: 64 * 1024 * 1024 } as const;

/** What one run of a files program answered: its exit code, its stdout, its error message. */
export interface FilesRun {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** The files operations, whatever runs their programs in the pod. */
export abstract class ShellFiles implements SandboxFiles {
  /** Largest read kept in memory. */
  protected abstract readonly maxReadBytes: number;

  /**
   * One program, `/bin/sh -c <script> pi-files <args…>`, in the pod; `stdin` its exact input.
   * With `stdoutTo`, stdout goes there (as it comes, where the transport allows) and
   * `FilesRun.stdout` is empty.
   */
  protected abstract run(
    target: ExecTarget,
    argv: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
    stdoutTo?: (chunk: Buffer) => void,
  ): Promise<Result<FilesRun>>;

  async #script(
    target: ExecTarget,
    script: string,
    args: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
    stdoutTo?: (chunk: Buffer) => void,
  ): Promise<Result<FilesRun>> {
    const argv = ["/bin/sh", "-c", script, "pi-files", ...args];
    return this.#check(await this.run(target, argv, signal, stdin, stdoutTo));
  }

  #check(r: Result<FilesRun>): Result<FilesRun> {
    if (!r.ok || r.value.code === 0) return r;
    const code = EXIT[r.value.code];
    return err(
      code
        ? new AppError(code, r.value.stderr || code)
        : new AppError(
            "sandbox_failed",
            `file operation exited ${r.value.code}: ${r.value.stderr.slice(0, 200)}`,
          ),
    );
  }

  async write(
    target: ExecTarget,
    path: string,
    body: ReadableStream<Uint8Array> | Uint8Array,
    opts: { signal: AbortSignal; maxBytes: number },
  ): Promise<Result<{ path: string; size: number }>> {
    const bytes = body instanceof Uint8Array ? body : await collect(body, opts.maxBytes);
    if (bytes === null || bytes.byteLength > opts.maxBytes)
      return err(new AppError("payload_too_large", `file is larger than ${opts.maxBytes} bytes`));
    const r = await this.#script(target, WRITE_SCRIPT, [path, String(bytes.byteLength)], opts.signal, bytes);
    if (!r.ok) return r;
    const size = Number(r.value.stdout.toString("utf8").trim());
    return ok({ path: posix.resolve("/workspace", path), size });
  }

  async read(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<ReadResult>> {
    const out = new ReadOutput({}, this.maxReadBytes);
    const r = await this.#script(target, READ_SCRIPT, [path, "0"], opts.signal, undefined, out.write);
    if (!r.ok) return r;
    if (out.kind === "dir") return ok({ kind: "dir", ...out.page.result() });
    if (out.tooLarge)
      return err(new AppError("payload_too_large", `file is larger than ${this.maxReadBytes} bytes`));
    const bytes = Buffer.concat(out.file);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        if (bytes.byteLength > 0) c.enqueue(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        c.close();
      },
    });
    return ok({ kind: "file", size: bytes.byteLength, body });
  }

  async list(
    target: ExecTarget,
    path: string,
    opts: ListOptions & { signal: AbortSignal },
  ): Promise<Result<FileListing>> {
    // A file's bytes are not kept (limit 0): only whether it was one matters.
    const out = new ReadOutput(opts, 0);
    // The walk starts at the cursor's depth; levels deeper than it are wholly after it.
    const start = opts.after === undefined ? 1 : opts.after.split("/").length;
    const countFrom = opts.after === undefined ? 1 : start + 1;
    const { maxEntries, maxBytes } = out.limits;
    const args = [path, opts.recursive ? "1" : "0", ...[start, countFrom, maxEntries, maxBytes].map(String)];
    const r = await this.#script(target, READ_SCRIPT, args, opts.signal, undefined, out.write);
    if (!r.ok) return r;
    if (out.kind !== "dir") return err(new AppError("invalid_path", `${path}: not a directory`));
    return ok(out.page.result());
  }

  async remove(target: ExecTarget, path: string, opts: { signal: AbortSignal }): Promise<Result<void>> {
    const r = await this.#script(target, REMOVE_SCRIPT, [path], opts.signal);
    return r.ok ? ok(undefined) : r;
  }
}

export interface ApiFilesOptions {
  kubeConfig: KubeConfig;
  /** Shared with the api-mode executor (main.ts builds one); one of its own otherwise. */
  podsExec?: PodsExec;
  container?: string;
  /** For the whole operation (a 64 MiB transfer over pods/exec takes a while). */
  timeoutMs?: number;
  /** Largest read kept in memory. */
  maxReadBytes?: number;
}

export class ApiFiles extends ShellFiles {
  readonly #pods: PodsExec;
  readonly #o: Required<Omit<ApiFilesOptions, "kubeConfig" | "podsExec">>;
  protected readonly maxReadBytes: number;

  constructor(o: ApiFilesOptions) {
    super();
    this.#pods = o.podsExec ?? new PodsExec(o.kubeConfig);
    this.#o = {
      container: o.container ?? "sandbox",
      timeoutMs: o.timeoutMs ?? FILES_DEFAULTS.timeoutMs,
      maxReadBytes: o.maxReadBytes ?? FILES_DEFAULTS.maxReadBytes,
    };
    this.maxReadBytes = this.#o.maxReadBytes;
  }

  protected async run(
    target: ExecTarget,
    argv: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
    stdoutTo?: (chunk: Buffer) => void,
  ): Promise<Result<FilesRun>> {
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let outBytes = 0;
    const max = this.#o.maxReadBytes + 1024;
    const sink = (into: Buffer[], counted: boolean) =>
      new Writable({
        write(chunk: Buffer, _e, done) {
          if (counted) outBytes += chunk.length;
          if (!counted || outBytes <= max) into.push(chunk);
          done();
        },
      });
    const stdout = stdoutTo
      ? new Writable({
          write(chunk: Buffer, _e, done) {
            stdoutTo(chunk);
            done();
          },
        })
      : sink(out, true);
    const stderr = sink(errOut, false);
    const input = stdin === undefined ? null : sizedStdin(stdin);
    const end = await this.#pods.run({
      target,
      container: this.#o.container,
      argv,
      stdout,
      stderr,
      stdin: input,
      signal,
      deadlineMs: this.#o.timeoutMs,
      deadlineMessage: `file operation on ${target.pod} took over ${this.#o.timeoutMs} ms`,
    });
    if (!end.ok) return err(end.error);
    const code = exitCodeOf(end.status);
    if (code instanceof AppError) return err(code);
    if (outBytes > max)
      return err(new AppError("payload_too_large", `file is larger than ${this.#o.maxReadBytes} bytes`));
    return ok({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(errOut).toString("utf8").trim() });
  }
}

/**
 * READ_SCRIPT's stdout as it arrives: after `D\n`, `find -printf "%y %s %T@ %P\0"` records go
 * straight into one page (ListSelection: `find`'s order is not the listing's, and only a page is
 * kept however long the listing); after `F\n`, the file's bytes, up to `maxFileBytes`.
 */
class ReadOutput {
  kind: "dir" | "file" | null = null;
  readonly page: ListSelection<FileEntry>;
  readonly limits: { maxEntries: number; maxBytes: number };
  readonly file: Buffer[] = [];
  tooLarge = false;
  #fileBytes = 0;
  #pending: Buffer = Buffer.alloc(0);

  constructor(
    opts: ListOptions,
    private readonly maxFileBytes: number,
  ) {
    this.limits = {
      maxEntries: Math.min(opts.limit ?? SANDBOX_LIMITS.maxListEntries, SANDBOX_LIMITS.maxListEntries),
      maxBytes: SANDBOX_LIMITS.maxListBytes,
    };
    this.page = new ListSelection<FileEntry>({ ...this.limits, after: opts.after });
  }

  readonly write = (chunk: Buffer): void => {
    let rest = chunk;
    if (this.kind === null) {
      this.#pending = Buffer.concat([this.#pending, chunk]);
      if (this.#pending.length < 2) return;
      this.kind = this.#pending.subarray(0, 2).toString() === "D\n" ? "dir" : "file";
      rest = this.#pending.subarray(2);
      this.#pending = Buffer.alloc(0);
    }
    if (this.kind === "file") {
      this.#fileBytes += rest.length;
      if (this.#fileBytes > this.maxFileBytes) this.tooLarge = true;
      else this.file.push(rest);
      return;
    }
    let buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, rest]) : rest;
    for (let at = buf.indexOf(0); at >= 0; at = buf.indexOf(0)) {
      const e = recordOf(buf.subarray(0, at).toString("utf8"));
      if (e) this.page.offer(e);
      buf = buf.subarray(at + 1);
    }
    // A copy: the remainder must not keep the whole chunk alive.
    this.#pending = Buffer.from(buf);
  };
}

/** One `find -printf "%y %s %T@ %P"` record as an entry (null: not one). */
function recordOf(rec: string): FileEntry | null {
  // A time before 1970 is negative: a record not parsed would still count toward the page's fullness.
  const m = /^(\S) (\d+) (-?[\d.]+) (.+)$/s.exec(rec);
  if (!m) return null;
  const type = m[1] === "d" ? "dir" : m[1] === "l" ? "symlink" : "file";
  return {
    name: m[4] as string,
    type,
    size: type === "file" ? Number(m[2]) : 0,
    mtime: new Date(Math.floor(Number(m[3]) * 1000)).toISOString(),
  };
}

async function collect(body: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array | null> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of body as unknown as AsyncIterable<Uint8Array>) {
    n += c.byteLength;
    if (n > max) return null;
    parts.push(c);
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
