import { SandboxApiError } from "./errors.ts";
import { type ExecOptions, execEvents, execJson } from "./exec-spec.ts";
import { SandboxPorts } from "./ports.ts";
import { SandboxProcesses } from "./processes.ts";
import { type CallOptions, callOptions, type Transport } from "./transport.ts";
import type {
  ExecEvent,
  ExecResult,
  FileEntry,
  SandboxInfo,
  SandboxNetwork,
  WriteFileResult,
} from "./types.ts";

/** Large files move slowly on a loaded link: the files calls get more than the default minute. */
const FILE_TIMEOUT_MS = 300_000;

/**
 * The URL path of a sandbox file. `/workspace/a/b` and `a/b` name the same file; each segment is
 * percent-encoded. Dot segments are resolved here, because a URL cannot carry them (fetch's URL
 * parser resolves `..` and even `%2E%2E`, so `files/../..` would reach another route): one that
 * climbs above the workspace is refused as `invalid_path` before anything is sent. Any other
 * absolute path goes out unchanged and the server (which resolves symlinks inside the pod)
 * refuses it — the client never rewrites it into a workspace path.
 */
export function filePath(path: string): string {
  const segments: string[] = [];
  for (const s of path.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") {
      if (segments.length === 0) {
        throw new SandboxApiError({
          code: "invalid_path",
          message: `${path} leads outside /workspace`,
          status: 0,
        });
      }
      segments.pop();
      continue;
    }
    segments.push(s);
  }
  const encoded = (segs: string[]) => segs.map((s) => encodeURIComponent(s)).join("/");
  if (!path.startsWith("/")) return encoded(segments);
  if (segments[0] === "workspace") return encoded(segments.slice(1));
  return `/${encoded(segments)}`;
}

/** The files route of a path: the workspace itself is `…/files` (no trailing slash), the rest `…/files/<path>`. */
export function filesUrl(base: string, path: string, asDir = false): string {
  const p = filePath(path);
  if (p === "") return `${base}/files`;
  return `${base}/files/${asDir && !p.endsWith("/") ? `${p}/` : p}`;
}

export type FileData = string | Uint8Array | ArrayBuffer | ReadableStream<Uint8Array>;

export class SandboxFiles {
  constructor(
    private readonly transport: Transport,
    private readonly base: string,
  ) {}

  /** Raw bytes in, atomically (temp file + rename); parent directories are created. */
  write(path: string, data: FileData, opts: CallOptions = {}): Promise<WriteFileResult> {
    const body =
      typeof data === "string"
        ? new TextEncoder().encode(data)
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : data;
    return this.transport.json<WriteFileResult>({
      method: "PUT",
      path: filesUrl(this.base, path),
      body,
      contentType: "application/octet-stream",
      timeoutMs: FILE_TIMEOUT_MS,
      ...callOptions(opts),
    });
  }

  /** The file's bytes, exact; `as: "text"` decodes UTF-8; `as: "stream"` hands over the body. */
  read(path: string, opts?: CallOptions & { as?: "bytes" }): Promise<Uint8Array>;
  read(path: string, opts: CallOptions & { as: "text" }): Promise<string>;
  read(path: string, opts: CallOptions & { as: "stream" }): Promise<ReadableStream<Uint8Array>>;
  async read(
    path: string,
    opts: CallOptions & { as?: "bytes" | "text" | "stream" } = {},
  ): Promise<Uint8Array | string | ReadableStream<Uint8Array>> {
    const { res, done } = await this.transport.open({
      method: "GET",
      path: filesUrl(this.base, path),
      accept: "application/octet-stream",
      timeoutMs: FILE_TIMEOUT_MS,
      ...callOptions(opts),
    });
    const requestId = res.headers.get("x-request-id") ?? undefined;
    if (isListing(res)) {
      done();
      await res.body?.cancel();
      throw new SandboxApiError({
        code: "is_a_directory",
        message: `${path} is a directory`,
        status: 200,
        requestId,
      });
    }
    if (opts.as === "stream") {
      if (!res.body) {
        done();
        return new ReadableStream({ start: (c) => c.close() });
      }
      // The timeout keeps running while the caller reads; it is cleared when the body ends.
      return res.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          flush: () => done(),
        }),
      );
    }
    try {
      const bytes = new Uint8Array(await res.arrayBuffer());
      return opts.as === "text" ? new TextDecoder().decode(bytes) : bytes;
    } finally {
      done();
    }
  }

  /**
   * A directory's entries (the workspace root by default), all of them: the server answers a page
   * at a time (at most 10,000 entries or 1 MiB), and this follows each page's `next`.
   */
  async list(dir = "", opts: CallOptions = {}): Promise<FileEntry[]> {
    const all: FileEntry[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.listPage(dir, after, opts);
      all.push(...page.entries);
      if (!page.truncated || page.next === undefined) return all;
      after = page.next;
    }
  }

  private async listPage(
    dir: string,
    after: string | undefined,
    opts: CallOptions,
  ): Promise<{ entries: FileEntry[]; truncated?: boolean; next?: string }> {
    const query = after === undefined ? "" : `?after=${encodeURIComponent(after)}`;
    const { res, done } = await this.transport.open({
      method: "GET",
      path: `${filesUrl(this.base, dir, true)}${query}`,
      accept: "application/json",
      ...callOptions(opts),
    });
    try {
      if (!isListing(res)) {
        await res.body?.cancel();
        throw new SandboxApiError({
          code: "not_a_directory",
          message: `${dir} is a file`,
          status: res.status,
          requestId: res.headers.get("x-request-id") ?? undefined,
        });
      }
      const body = (await res.json()) as { entries?: FileEntry[]; truncated?: boolean; next?: string };
      if (!Array.isArray(body.entries)) {
        throw new SandboxApiError({
          code: "invalid_response",
          message: "no entries[] in the listing",
          status: 200,
        });
      }
      return {
        entries: body.entries,
        truncated: body.truncated === true,
        ...(typeof body.next === "string" ? { next: body.next } : {}),
      };
    } finally {
      done();
    }
  }

  async remove(path: string, opts: CallOptions = {}): Promise<void> {
    await this.transport.json<void>({
      method: "DELETE",
      path: filesUrl(this.base, path),
      ...callOptions(opts),
    });
  }
}

/** A file comes back as raw bytes; only a directory is answered with JSON. */
function isListing(res: Response): boolean {
  return (res.headers.get("content-type") ?? "").toLowerCase().startsWith("application/json");
}

/** A sandbox that lives across requests. `await using sb = await client.sandboxes.create()` deletes it at scope end. */
export class Sandbox {
  readonly files: SandboxFiles;
  /** Long-lived processes: `start()` returns a handle whose `output()` reattaches on its own. */
  readonly processes: SandboxProcesses;
  /** Expiring links to the sandbox's ports: `link(port, {ttlSeconds, public})`. */
  readonly ports: SandboxPorts;
  private current: SandboxInfo;

  constructor(
    private readonly transport: Transport,
    info: SandboxInfo,
  ) {
    this.current = info;
    this.files = new SandboxFiles(transport, this.base);
    this.processes = new SandboxProcesses(transport, this.base);
    this.ports = new SandboxPorts(transport, this.base);
  }

  get id(): string {
    return this.current.id;
  }
  /** As last seen (create, get, list or refresh). */
  get info(): SandboxInfo {
    return this.current;
  }
  private get base(): string {
    return `/v1/sandboxes/${encodeURIComponent(this.current.id)}`;
  }

  exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return execJson(this.transport, `${this.base}/exec`, command, opts);
  }

  execStream(command: string, opts: ExecOptions = {}): AsyncGenerator<ExecEvent> {
    return execEvents(this.transport, `${this.base}/exec`, command, opts);
  }

  /** Re-read its state (activity, expiry); a deleted or expired sandbox throws `sandbox_not_found`. */
  async refresh(opts: CallOptions = {}): Promise<SandboxInfo> {
    this.current = await this.transport.json<SandboxInfo>({
      method: "GET",
      path: this.base,
      ...callOptions(opts),
    });
    return this.current;
  }

  /** Its network policy: where it may connect through the egress proxy (empty allow: nowhere). */
  network(opts: CallOptions = {}): Promise<SandboxNetwork> {
    return this.transport.json<SandboxNetwork>({
      method: "GET",
      path: `${this.base}/network`,
      ...callOptions(opts),
    });
  }

  /**
   * Replace its network policy whole (`{allow?, deny?}`: host names, `*.name`, IPs or CIDRs, each
   * with an optional `:port`). New connections follow it at once; open ones it forbids are closed.
   */
  setNetwork(policy: { allow?: string[]; deny?: string[] }, opts: CallOptions = {}): Promise<SandboxNetwork> {
    return this.transport.json<SandboxNetwork>({
      method: "PUT",
      path: `${this.base}/network`,
      json: policy,
      ...callOptions(opts),
    });
  }

  /** Delete it (pod and workspace). Closing one that is already gone is not an error. */
  async close(opts: CallOptions = {}): Promise<void> {
    try {
      await this.transport.json<void>({ method: "DELETE", path: this.base, ...callOptions(opts) });
    } catch (e) {
      if (e instanceof SandboxApiError && (e.code === "sandbox_not_found" || e.code === "sandbox_expired"))
        return;
      throw e;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
