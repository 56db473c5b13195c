// A sandbox client for the OpenAI Agents SDK's Sandbox Agents (`@openai/agents/sandbox`, tested
// with 0.20.0): each Agents SDK sandbox session is one of our sandboxes (POST /v1/sandboxes), and
// `exec_command`, file reads and directory listings go to it through SandboxClient. Import it as
// `@pi-sandbox/client/agents`; @openai/agents is an optional peer dependency of the package.
import {
  type SandboxClient as AgentsSandboxClient,
  type ExecCommandArgs,
  type ListDirectoryArgs,
  type Manifest,
  normalizeSandboxClientCreateArgs,
  type ReadFileArgs,
  type SandboxClientCreateArgs,
  type SandboxDirectoryEntry,
  type SandboxExecResult,
  type SandboxSession,
  type SandboxSessionState,
} from "@openai/agents/sandbox";
import type { SandboxClient } from "./client.ts";
import type { Sandbox } from "./sandbox.ts";

/** Tested with these Agents SDK versions: the sandbox interface still changes between releases. */
export const TESTED_AGENTS_SDK_VERSIONS = ["0.20.0"] as const;

export interface PiSandboxOptions extends Record<string, unknown> {
  idleTimeoutSeconds?: number;
  maxLifetimeSeconds?: number;
  /** Each `exec_command` runs to completion within this (default 120 s); there are no PTY sessions. */
  commandTimeoutSeconds?: number;
}

export interface PiSandboxSessionState extends SandboxSessionState {
  sandboxId: string;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export class PiSandboxSession implements SandboxSession<PiSandboxSessionState> {
  state: PiSandboxSessionState;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly sandbox: Sandbox,
    manifest: Manifest,
    private readonly commandTimeoutSeconds: number,
  ) {
    this.state = { manifest, sandboxId: sandbox.id };
  }

  /** A workdir relative to the manifest root (the workspace), or absolute under it. */
  private cwdOf(workdir: string | undefined): string {
    const root = this.state.manifest.root;
    if (!workdir) return root;
    return workdir.startsWith("/") ? workdir : `${root.replace(/\/$/, "")}/${workdir}`;
  }

  async exec(args: ExecCommandArgs): Promise<SandboxExecResult> {
    if (args.tty) throw new Error("pi-sandbox sessions have no PTY: run the command without tty");
    const r = await this.sandbox.exec(args.cmd, {
      cwd: this.cwdOf(args.workdir),
      timeoutSeconds: this.commandTimeoutSeconds,
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
    const r = await this.exec(args);
    return [
      `Wall time: ${r.wallTimeSeconds.toFixed(4)} seconds`,
      typeof r.exitCode === "number"
        ? `Process exited with code ${r.exitCode}`
        : "Process exited without a code",
      "Output:",
      r.output,
    ].join("\n");
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
    return new PiSandboxSession(sandbox, args.manifest, opts.commandTimeoutSeconds ?? 120);
  }

  async delete(state: PiSandboxSessionState): Promise<void> {
    await this.client.sandboxes.remove(state.sandboxId).catch((e: unknown) => {
      if ((e as { code?: string }).code !== "sandbox_not_found") throw e;
    });
  }
}
