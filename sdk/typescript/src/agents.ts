// A sandbox client for the OpenAI Agents SDK's Sandbox Agents (`@openai/agents/sandbox`, tested
// with 0.20.0): each Agents SDK sandbox session is one of our sandboxes (POST /v1/sandboxes), and
// `exec_command`, file reads and directory listings go to it through SandboxClient (`exec_command`
// with `tty: true` and `write_stdin` through its processes API); the workspace
// moves as a tar archive (persistWorkspace/hydrateWorkspace, and a `remote` snapshot spec on
// create/stop). Import it as `@pi-sandbox/client/agents`; @openai/agents is an optional peer
// dependency of the package.
import {
  type SandboxClient as AgentsSandboxClient,
  type Entry,
  type ExecCommandArgs,
  type ExposedPortEndpoint,
  getRecordedExposedPortEndpoint,
  type ListDirectoryArgs,
  Manifest,
  type MaterializeEntryArgs,
  normalizeExposedPort,
  normalizeSandboxClientCreateArgs,
  type ReadFileArgs,
  type RemoteSnapshotSpec,
  recordExposedPortEndpoint,
  resolveSandboxArchiveLimits,
  SandboxArchiveError,
  type SandboxArchiveLimits,
  type SandboxClientCreateArgs,
  type SandboxClientResumeOptions,
  SandboxConfigurationError,
  type SandboxDirectoryEntry,
  type SandboxExecResult,
  SandboxExposedPortUnavailableError,
  type SandboxSession,
  type SandboxSessionState,
  SandboxSnapshotError,
  SandboxUnsupportedFeatureError,
  type SnapshotSpec,
  type WorkspaceArchiveData,
  type WorkspaceArchiveOptions,
  type WriteStdinArgs,
} from "@openai/agents/sandbox";
import type { SandboxClient } from "./client.ts";
import { SandboxApiError } from "./errors.ts";
import type { ProcessHandle } from "./processes.ts";
import type { Sandbox } from "./sandbox.ts";
import { tarCensus } from "./tar-limits.ts";

/** Tested with these Agents SDK versions: the sandbox interface still changes between releases. */
export const TESTED_AGENTS_SDK_VERSIONS = ["0.20.0"] as const;

export interface PiSandboxOptions extends Record<string, unknown> {
  idleTimeoutSeconds?: number;
  maxLifetimeSeconds?: number;
  /**
   * Each `exec_command` without a tty runs to completion within this (default 120 s); with `tty: true`
   * it is a process of the sandbox that `write_stdin` talks to.
   */
  commandTimeoutSeconds?: number;
  /** The ports `resolveExposedPort` may open (empty or unset: any port 1–65535 but the exec server's). */
  exposedPorts?: number[];
  /** Lifetime of the port link behind an exposed port (10–86400 s, default 3600). */
  exposedPortTtlSeconds?: number;
  /**
   * Exposed ports as public links: anyone with the URL reaches the port. Default false: a request
   * to the URL also needs the tenant's JWT (`Authorization: Bearer`).
   */
  exposedPortsPublic?: boolean;
}

/** How a session opens port links for `resolveExposedPort`. */
interface ExposedPortConfig {
  ports: number[];
  ttlSeconds: number | undefined;
  public: boolean;
}

/** A recorded link is reused while it has at least this much life left; a newer one is opened after. */
const EXPOSED_PORT_REUSE_MARGIN_MS = 60_000;

const exposedPortConfig = (o: PiSandboxOptions): ExposedPortConfig => ({
  ports: [...new Set((o.exposedPorts ?? []).map(normalizeExposedPort))],
  ttlSeconds: o.exposedPortTtlSeconds,
  public: o.exposedPortsPublic === true,
});

export interface PiSandboxSessionState extends SandboxSessionState {
  sandboxId: string;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const joinPath = (dir: string, rel: string) => `${dir.replace(/\/$/, "")}/${rel.replace(/^\.?\//, "")}`;

/** The Agents SDK's own defaults for `exec_command` and `write_stdin` (its shell capability). */
const DEFAULT_EXEC_YIELD_MS = 10_000;
const DEFAULT_WRITE_STDIN_YIELD_MS = 250;

/** The built-in sessions' answer layout (minus their random chunk ids). */
function formatExecResult(r: SandboxExecResult): string {
  return [
    `Wall time: ${r.wallTimeSeconds.toFixed(4)} seconds`,
    typeof r.sessionId === "number"
      ? `Process running with session ID ${r.sessionId}`
      : typeof r.exitCode === "number"
        ? `Process exited with code ${r.exitCode}`
        : "Process exited without a code",
    "Output:",
    r.output,
  ].join("\n");
}

/** `max_output_tokens` as the SDK counts them (about 4 bytes each): the head and tail, the middle named. */
function capTokens(text: string, maxTokens: number | undefined): string {
  if (maxTokens === undefined) return text;
  const bytes = new TextEncoder().encode(text);
  const max = Math.max(0, maxTokens) * 4;
  if (bytes.length <= max) return text;
  const half = Math.floor(max / 2);
  const dec = new TextDecoder();
  const cut = Math.ceil((bytes.length - 2 * half) / 4);
  return `${dec.decode(bytes.subarray(0, half))}...${cut} tokens truncated...${dec.decode(bytes.subarray(bytes.length - half))}`;
}

function isRemoteSnapshot(spec: SnapshotSpec | undefined): spec is RemoteSnapshotSpec {
  return spec?.type === "remote" && typeof (spec as RemoteSnapshotSpec).store?.save === "function";
}

export class PiSandboxSession implements SandboxSession<PiSandboxSessionState> {
  state: PiSandboxSessionState;
  /** Terminal sessions by id (= pid), with the offset their output was read to. */
  private readonly terminals = new Map<number, { handle: ProcessHandle; next: number }>();
  private closing: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private archiveLimits: SandboxArchiveLimits | null | undefined;

  constructor(
    private readonly sandbox: Sandbox,
    manifest: Manifest,
    private readonly commandTimeoutSeconds: number,
    private readonly exposed: ExposedPortConfig,
    /** A `remote` snapshot spec: the workspace is saved to its store when the session stops. */
    private readonly snapshotSpec?: RemoteSnapshotSpec,
  ) {
    this.state = { manifest, sandboxId: sandbox.id };
  }

  setArchiveLimits(limits?: SandboxArchiveLimits | null): void {
    this.archiveLimits = limits;
  }

  /** A workdir relative to the manifest root (the workspace), or absolute under it. */
  private cwdOf(workdir: string | undefined): string {
    const root = this.state.manifest.root;
    if (!workdir) return root;
    return workdir.startsWith("/") ? workdir : `${root.replace(/\/$/, "")}/${workdir}`;
  }

  /** `exec_command` with `tty: true` and `write_stdin` run on the sandbox's processes API (http exec mode). */
  supportsPty(): boolean {
    return true;
  }

  /**
   * A port of the sandbox reachable from outside: a port link (`sandbox.ports.link`), its URL as the
   * SDK's endpoint (`urlForExposedPort(endpoint, "http" | "ws")` gives it back, token included).
   * Recorded in the state and reused while it has a minute left; then a new link is opened.
   */
  async resolveExposedPort(port: number): Promise<ExposedPortEndpoint> {
    const p = normalizeExposedPort(port);
    if (this.exposed.ports.length > 0 && !this.exposed.ports.includes(p)) {
      throw new SandboxConfigurationError(`this session was not configured to expose port ${p}`, {
        provider: "pi-sandbox",
        port: p,
        configuredPorts: this.exposed.ports,
      });
    }
    const recorded = getRecordedExposedPortEndpoint(this.state, p);
    const until = typeof recorded?.expiresAt === "string" ? Date.parse(recorded.expiresAt) : 0;
    if (recorded && until - Date.now() > EXPOSED_PORT_REUSE_MARGIN_MS) return recorded;
    let link: Awaited<ReturnType<Sandbox["ports"]["link"]>>;
    try {
      link = await this.sandbox.ports.link(p, {
        ...(this.exposed.ttlSeconds !== undefined ? { ttlSeconds: this.exposed.ttlSeconds } : {}),
        public: this.exposed.public,
      });
    } catch (e) {
      if (!(e instanceof SandboxApiError)) throw e;
      throw new SandboxExposedPortUnavailableError(`port ${p}: ${e.code}: ${e.message}`, {
        provider: "pi-sandbox",
        port: p,
        code: e.code,
        status: e.status,
      });
    }
    const u = new URL(link.url);
    const tls = u.protocol === "https:";
    return recordExposedPortEndpoint(
      this.state,
      {
        host: u.hostname,
        port: u.port ? Number(u.port) : tls ? 443 : 80,
        tls,
        query: u.search.replace(/^\?/, ""),
        url: link.url,
        linkId: link.id,
        expiresAt: link.expiresAt,
        public: link.public,
      },
      p,
    );
  }

  async exec(args: ExecCommandArgs): Promise<SandboxExecResult> {
    if (args.tty) return this.execOnTerminal(args);
    const env = this.state.environment;
    const r = await this.sandbox.exec(args.cmd, {
      cwd: this.cwdOf(args.workdir),
      timeoutSeconds: this.commandTimeoutSeconds,
      // Manifest environment applied after creation (the sandbox's own default env has the rest).
      ...(env && Object.keys(env).length > 0 ? { env } : {}),
    });
    const notes = [
      r.timedOut ? `[timed out after ${this.commandTimeoutSeconds} s and killed]` : "",
      r.truncated ? `[output truncated: stdout ${r.stdoutBytes} B, stderr ${r.stderrBytes} B in all]` : "",
    ].filter(Boolean);
    return {
      output: [r.stdout + r.stderr, ...notes].join("\n"),
      stdout: r.stdout,
      stderr: r.stderr,
      wallTimeSeconds: r.durationMs / 1000,
      exitCode: r.exitCode,
    };
  }

  /** What the model reads back from `exec_command` (the built-in sessions' layout, minus chunk ids). */
  async execCommand(args: ExecCommandArgs): Promise<string> {
    return formatExecResult(await this.exec(args));
  }

  /**
   * A command on a terminal, as a process of the sandbox: its output within `yieldTimeMs`, and
   * either how it exited or a session id (its pid) for `write_stdin`. The process lives in the
   * sandbox, so a resumed session can go on with it.
   */
  private async execOnTerminal(args: ExecCommandArgs): Promise<SandboxExecResult> {
    const started = Date.now();
    const env = this.state.environment;
    const handle = await this.sandbox.processes.start({
      command: args.cmd,
      cwd: this.cwdOf(args.workdir),
      tty: true,
      ...(env && Object.keys(env).length > 0 ? { env } : {}),
    });
    return this.yieldOutput(
      handle,
      0,
      args.yieldTimeMs ?? DEFAULT_EXEC_YIELD_MS,
      args.maxOutputTokens,
      started,
    );
  }

  /** Types `chars` into a terminal session (`\u0003` is Ctrl-C there) and returns what followed within the wait. */
  async writeStdin(args: WriteStdinArgs): Promise<string> {
    const started = Date.now();
    let session = this.terminals.get(args.sessionId);
    if (!session) {
      // A session of a resumed state: the process may still run in the sandbox (its new output from now on).
      try {
        const handle = await this.sandbox.processes.get(args.sessionId);
        session = { handle, next: handle.info.outputBytes };
      } catch (e) {
        if ((e as { code?: string }).code !== "process_not_found") throw e;
        return formatExecResult({
          output: `write_stdin failed: session not found: ${args.sessionId}`,
          stdout: "",
          stderr: "",
          wallTimeSeconds: 0,
          exitCode: 1,
        });
      }
    }
    const chars = args.chars ?? "";
    if (chars.length > 0) {
      try {
        await session.handle.write(chars);
      } catch (e) {
        // It exited meanwhile: the answer below says how, with the output it left.
        const code = (e as { code?: string }).code;
        if (code !== "process_exited" && code !== "stdin_closed") throw e;
      }
    }
    return formatExecResult(
      await this.yieldOutput(
        session.handle,
        session.next,
        args.yieldTimeMs ?? DEFAULT_WRITE_STDIN_YIELD_MS,
        args.maxOutputTokens,
        started,
      ),
    );
  }

  private async yieldOutput(
    handle: ProcessHandle,
    since: number,
    waitMs: number,
    maxOutputTokens: number | undefined,
    started: number,
  ): Promise<SandboxExecResult> {
    const got = await handle.collect({ since, waitMs });
    const lost = got.dropped > 0 ? `[${got.dropped} bytes of output were lost: it fell behind]\n` : "";
    const text = new TextDecoder().decode(got.bytes);
    const output = `${lost}${capTokens(text, maxOutputTokens)}`;
    const wallTimeSeconds = (Date.now() - started) / 1000;
    if (got.exited) {
      this.terminals.delete(handle.pid);
      return { output, stdout: text, stderr: "", wallTimeSeconds, exitCode: handle.exit?.exitCode ?? 1 };
    }
    this.terminals.set(handle.pid, { handle, next: got.next });
    return { output, stdout: text, stderr: "", wallTimeSeconds, sessionId: handle.pid };
  }

  async readFile(args: ReadFileArgs): Promise<Uint8Array> {
    const bytes = await this.sandbox.files.read(args.path);
    return args.maxBytes !== undefined ? bytes.slice(0, args.maxBytes) : bytes;
  }

  async listDir(args: ListDirectoryArgs): Promise<SandboxDirectoryEntry[]> {
    const dir = this.cwdOf(args.path);
    const entries = await this.sandbox.files.list(dir);
    return entries.map((e) => ({
      name: e.name,
      path: `${dir.replace(/\/$/, "")}/${e.name}`,
      type: e.type === "symlink" ? "other" : e.type,
    }));
  }

  async pathExists(path: string): Promise<boolean> {
    return (await this.sandbox.exec(`test -e ${quote(this.cwdOf(path))}`)).exitCode === 0;
  }

  async directoryExists(path: string): Promise<boolean> {
    return (await this.sandbox.exec(`test -d ${quote(this.cwdOf(path))}`)).exitCode === 0;
  }

  async running(): Promise<boolean> {
    try {
      await this.sandbox.refresh();
      return true;
    } catch {
      return false;
    }
  }

  // ---- the workspace as a tar archive (byte-exact: tar of the files, moved by the files API) ----

  /** The workspace (the manifest root, its ephemeral paths left out) as a tar archive. */
  async persistWorkspace(): Promise<Uint8Array> {
    const root = this.state.manifest.root;
    const name = `.pi-sandbox-archive-${crypto.randomUUID()}.tar`;
    const archive = joinPath(root, name);
    const leaveOut = [...this.state.manifest.ephemeralPersistencePaths()]
      .map((p) => `--exclude=${quote(`./${p.replace(/^\.?\//, "")}`)}`)
      .join(" ");
    // The root's entries, not `.` itself: the root directory belongs to the pod, not to the archive.
    const tar = `find . -mindepth 1 -maxdepth 1 ! -name ${quote(name)} -print0 | tar ${leaveOut} --null -T - -cf ${quote(name)}`;
    try {
      const r = await this.sandbox.exec(`cd ${quote(root)} && ${tar} && wc -c < ${quote(name)}`, {
        timeoutSeconds: this.commandTimeoutSeconds,
      });
      if (r.exitCode !== 0) {
        throw new SandboxArchiveError(`persistWorkspace: tar exited ${r.exitCode}: ${r.stderr.trim()}`);
      }
      const limits = resolveSandboxArchiveLimits(this.archiveLimits);
      const size = Number(r.stdout.trim());
      if (limits?.maxInputBytes != null && size > limits.maxInputBytes) {
        throw new SandboxArchiveError(
          `persistWorkspace: the archive is ${size} bytes, above the limit of ${limits.maxInputBytes}`,
        );
      }
      return await this.sandbox.files.read(archive);
    } finally {
      await this.sandbox.files.remove(archive).catch(() => undefined);
    }
  }

  /** Replaces the workspace with a tar archive's contents, after checking it against the limits. */
  async hydrateWorkspace(data: WorkspaceArchiveData, options: WorkspaceArchiveOptions = {}): Promise<void> {
    const bytes =
      typeof data === "string"
        ? new TextEncoder().encode(data)
        : data instanceof Uint8Array
          ? data
          : new Uint8Array(data);
    const limits = resolveSandboxArchiveLimits(
      options.archiveLimits === undefined ? this.archiveLimits : options.archiveLimits,
    );
    if (limits?.maxInputBytes != null && bytes.length > limits.maxInputBytes) {
      throw new SandboxArchiveError(
        `hydrateWorkspace: the archive is ${bytes.length} bytes, above the limit of ${limits.maxInputBytes}`,
      );
    }
    let census: ReturnType<typeof tarCensus>;
    try {
      census = tarCensus(bytes);
    } catch (e) {
      throw new SandboxArchiveError(`hydrateWorkspace: ${(e as Error).message}`);
    }
    if (limits?.maxMembers != null && census.members > limits.maxMembers) {
      throw new SandboxArchiveError(
        `hydrateWorkspace: ${census.members} archive members, above the limit of ${limits.maxMembers}`,
      );
    }
    if (limits?.maxExtractedBytes != null && census.bytes > limits.maxExtractedBytes) {
      throw new SandboxArchiveError(
        `hydrateWorkspace: ${census.bytes} bytes extracted, above the limit of ${limits.maxExtractedBytes}`,
      );
    }
    const root = this.state.manifest.root;
    const name = `.pi-sandbox-archive-${crypto.randomUUID()}.tar`;
    await this.sandbox.files.write(joinPath(root, name), bytes);
    // The workspace becomes the archive: what was there before goes first.
    const r = await this.sandbox.exec(
      `cd ${quote(root)} && find . -mindepth 1 -maxdepth 1 ! -name ${quote(name)} -exec rm -rf {} + && tar -xf ${quote(name)}; rc=$?; rm -f ${quote(name)}; exit $rc`,
      { timeoutSeconds: this.commandTimeoutSeconds },
    );
    if (r.exitCode !== 0) {
      throw new SandboxArchiveError(`hydrateWorkspace: tar exited ${r.exitCode}: ${r.stderr.trim()}`);
    }
  }

  // ---- manifest entries: files and directories (other kinds need the host or credentials) ----

  async materializeEntry(args: MaterializeEntryArgs): Promise<void> {
    await this.writeEntry(joinPath(this.state.manifest.root, args.path), args.entry);
    this.state.manifest = withEntries(this.state.manifest, { [args.path]: args.entry });
  }

  async applyManifest(manifest: Manifest): Promise<void> {
    for (const [path, entry] of Object.entries(manifest.entries)) {
      await this.writeEntry(joinPath(this.state.manifest.root, path), entry);
    }
    this.state.environment = { ...this.state.environment, ...(await manifest.resolveEnvironment()) };
    this.state.manifest = withEntries(this.state.manifest, manifest.entries);
  }

  private async writeEntry(path: string, entry: Entry): Promise<void> {
    if (entry.type === "file") {
      await this.sandbox.files.write(path, entry.content);
    } else if (entry.type === "dir") {
      const r = await this.sandbox.exec(`mkdir -p ${quote(path)}`);
      if (r.exitCode !== 0) throw new SandboxArchiveError(`mkdir ${path}: ${r.stderr.trim()}`);
      for (const [name, child] of Object.entries(entry.children ?? {})) {
        await this.writeEntry(joinPath(path, name), child);
      }
    } else {
      throw new SandboxUnsupportedFeatureError(
        `pi-sandbox materializes file and dir manifest entries only, not ${entry.type} (${path})`,
      );
    }
  }

  /** With a `remote` snapshot spec, the workspace is saved to its store (once) before the sandbox goes. */
  stop(): Promise<void> {
    const spec = this.snapshotSpec;
    if (!spec) return Promise.resolve();
    this.stopping ??= (async () => {
      const data = await this.persistWorkspace();
      try {
        const saved = await spec.store.save({
          data,
          ...(spec.id !== undefined ? { id: spec.id } : {}),
          ...(spec.metadata ? { metadata: spec.metadata } : {}),
        });
        this.state.snapshot = { type: "remote", id: saved.id };
      } catch (e) {
        throw new SandboxSnapshotError(`saving the workspace snapshot failed: ${(e as Error).message}`);
      }
    })();
    return this.stopping;
  }

  /** The sandbox is deleted once, whichever of the Agents SDK's clean-up hooks comes first. */
  shutdown(): Promise<void> {
    this.closing ??= this.sandbox.close();
    return this.closing;
  }
  delete(): Promise<void> {
    return this.shutdown();
  }
  close(): Promise<void> {
    return this.shutdown();
  }
}

/** The manifest with entries added (the SDK's Manifest is immutable). */
function withEntries(m: Manifest, entries: Record<string, Entry>): Manifest {
  return new Manifest({
    version: m.version,
    root: m.root,
    entries: { ...m.entries, ...entries },
    environment: m.environment,
    users: m.users,
    groups: m.groups,
    extraPathGrants: m.extraPathGrants,
    remoteMountCommandAllowlist: m.remoteMountCommandAllowlist,
  });
}

export class PiSandboxAgentsClient implements AgentsSandboxClient<PiSandboxOptions, PiSandboxSessionState> {
  readonly backendId = "pi-sandbox";
  readonly supportsDefaultOptions = true;

  constructor(
    private readonly client: SandboxClient,
    private readonly defaults: PiSandboxOptions = {},
  ) {}

  create(args?: SandboxClientCreateArgs<PiSandboxOptions>): Promise<PiSandboxSession>;
  create(manifest: Manifest, options?: PiSandboxOptions): Promise<PiSandboxSession>;
  async create(
    a?: SandboxClientCreateArgs<PiSandboxOptions> | Manifest,
    o?: PiSandboxOptions,
  ): Promise<PiSandboxSession> {
    const args = normalizeSandboxClientCreateArgs(a, o);
    const opts = { ...this.defaults, ...args.options };
    const environment = await args.manifest.resolveEnvironment();
    const sandbox = await this.client.sandboxes.create({
      ...(opts.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: opts.idleTimeoutSeconds } : {}),
      ...(opts.maxLifetimeSeconds !== undefined ? { maxLifetimeSeconds: opts.maxLifetimeSeconds } : {}),
      ...(Object.keys(environment).length > 0 ? { env: environment } : {}),
    });
    const spec = isRemoteSnapshot(args.snapshot) ? args.snapshot : undefined;
    const session = new PiSandboxSession(
      sandbox,
      args.manifest,
      opts.commandTimeoutSeconds ?? 120,
      exposedPortConfig(opts),
      spec,
    );
    if (args.archiveLimits !== undefined) session.setArchiveLimits(args.archiveLimits);
    try {
      // A saved snapshot is the workspace; without one, the manifest's entries are.
      if (spec?.id !== undefined && (await (spec.store.exists?.({ id: spec.id }) ?? true))) {
        const { data } = await spec.store.load({ id: spec.id });
        await session.hydrateWorkspace(data);
        session.state.snapshot = { type: "remote", id: spec.id };
      } else if (Object.keys(args.manifest.entries).length > 0) {
        await session.applyManifest(args.manifest);
      }
    } catch (e) {
      await session.shutdown().catch(() => undefined);
      throw e;
    }
    return session;
  }

  /** The session of a sandbox that still exists (by the id in the state): its workspace is as it was. */
  async resume(
    state: PiSandboxSessionState,
    options?: SandboxClientResumeOptions<PiSandboxOptions>,
  ): Promise<PiSandboxSession> {
    const sandbox = await this.client.sandboxes.get(state.sandboxId);
    const opts = { ...this.defaults, ...options?.clientOptions };
    const session = new PiSandboxSession(
      sandbox,
      state.manifest,
      opts.commandTimeoutSeconds ?? 120,
      exposedPortConfig(opts),
    );
    session.state = { ...state, sandboxId: sandbox.id };
    if (options?.archiveLimits !== undefined) session.setArchiveLimits(options.archiveLimits);
    return session;
  }

  /** What a RunState keeps of a session: the sandbox's id (the SDK keeps the manifest itself). */
  async serializeSessionState(state: PiSandboxSessionState): Promise<Record<string, unknown>> {
    return {
      sandboxId: state.sandboxId,
      ...(state.environment ? { environment: state.environment } : {}),
    };
  }

  async deserializeSessionState(state: Record<string, unknown>): Promise<PiSandboxSessionState> {
    const { sandboxId, manifest } = state;
    if (typeof sandboxId !== "string" || sandboxId === "") {
      throw new SandboxSnapshotError("pi-sandbox session state without a sandboxId");
    }
    if (!(manifest instanceof Manifest)) {
      throw new SandboxSnapshotError("pi-sandbox session state without a deserialized manifest");
    }
    return { ...state, sandboxId, manifest };
  }

  async delete(state: PiSandboxSessionState): Promise<void> {
    await this.client.sandboxes.remove(state.sandboxId).catch((e: unknown) => {
      if ((e as { code?: string }).code !== "sandbox_not_found") throw e;
    });
  }
}
