import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from "node:fs";
import { constants } from "node:os";
import { bwrapArgs, type SandboxSpec } from "./bwrap-args.ts";

export interface SandboxExit {
  /** Exit code of the container's command; 128+N when it died of signal N (as container runtimes report). */
  exitCode: number;
  signal: string | null;
}

const LOG_CAP_BYTES = 16 * 1024 * 1024;
const TAIL_CHARS = 2048;
const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * One running container: a bwrap process tree. `initPid` is the host PID of the PID-namespace
 * init (bwrap's reaper), whose namespaces exec joins.
 */
export class Sandbox {
  readonly exited: Promise<SandboxExit>;
  initPid: number | undefined;
  private readonly child: ChildProcess;
  private readonly ready: Promise<number | undefined>;
  private exitCode: number | undefined;
  private done = false;
  private logged = 0;
  /** The last few KiB of output: the message of a container that failed to start. */
  private tail = "";

  constructor(
    readonly spec: SandboxSpec,
    readonly env: Record<string, string>,
    logPath: string,
  ) {
    const log: WriteStream = createWriteStream(logPath, { flags: "a" });
    log.on("error", () => {});
    this.child = spawn("bwrap", bwrapArgs(spec), {
      // The sandbox sees only the pod's environment, never the kubelet's.
      env: sandboxEnv(spec, env),
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      detached: false,
    });
    // The log is capped: a chatty container must not fill the disk. Output past the cap is dropped.
    const onOutput = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString("utf8")).slice(-TAIL_CHARS);
      if (this.logged >= LOG_CAP_BYTES) return;
      this.logged += chunk.length;
      log.write(chunk);
    };
    this.child.stdout?.on("data", onOutput);
    this.child.stderr?.on("data", onOutput);
    let resolveReady: (pid: number | undefined) => void = () => {};
    this.ready = new Promise((r) => {
      resolveReady = r;
    });
    const statusFd = this.child.stdio[3];
    let buf = "";
    statusFd?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      // bwrap writes one JSON document per line-ish chunk: {"child-pid": N} then {"exit-code": N}.
      for (const m of buf.matchAll(/\{[^{}]*\}/g)) {
        try {
          const doc = JSON.parse(m[0]) as Record<string, unknown>;
          if (typeof doc["child-pid"] === "number") {
            this.initPid = doc["child-pid"];
            resolveReady(this.initPid);
          }
          if (typeof doc["exit-code"] === "number") this.exitCode = doc["exit-code"];
        } catch {
          // partial document: wait for more
        }
      }
      const lastClose = buf.lastIndexOf("}");
      if (lastClose >= 0) buf = buf.slice(lastClose + 1);
    });
    statusFd?.on("error", () => {});
    this.exited = new Promise((resolve) => {
      this.child.once("error", (err) => {
        log.end(`kubelet: cannot start bwrap: ${err.message}\n`);
        this.done = true;
        resolveReady(undefined);
        resolve({ exitCode: 128, signal: null });
      });
      this.child.once("close", (code, signal) => {
        this.done = true;
        resolveReady(undefined);
        log.end();
        if (this.exitCode !== undefined) resolve({ exitCode: this.exitCode, signal: null });
        else if (signal) resolve({ exitCode: 128 + signalNumber(signal), signal });
        else resolve({ exitCode: code ?? 128, signal: null });
      });
    });
  }

  /** Resolves with the init PID once bwrap has set up the namespaces, or undefined if it died first. */
  started(): Promise<number | undefined> {
    return this.ready;
  }

  /** True when bwrap died before the container's command ran (bad bind, bad args). */
  get failedToStart(): boolean {
    if (!this.done) return false;
    if (this.initPid === undefined) return true;
    // bwrap reports setup and execvp failures itself, as its last words, with exit code 1.
    return this.exitCode !== 0 && /(^|\n)bwrap: [^\n]*\n?$/.test(this.tail);
  }

  get outputTail(): string {
    return this.tail;
  }

  get running(): boolean {
    return !this.done;
  }

  /**
   * SIGTERM the container's main process (the init's child, as a runtime signals the container's
   * PID 1), then SIGKILL the whole tree after `graceMs`. Killing the PID-namespace init makes the
   * kernel kill every process in the namespace, exec'd ones included.
   */
  async stop(graceMs: number): Promise<SandboxExit> {
    if (this.done) return this.exited;
    // Just spawned: wait (briefly) for the init PID so the right process is signalled.
    await Promise.race([this.ready, new Promise((r) => setTimeout(r, 2000).unref())]);
    const init = this.initPid;
    if (init !== undefined) {
      for (const pid of childrenOf(init)) safeKill(pid, "SIGTERM");
    } else {
      safeKill(this.child.pid, "SIGTERM");
    }
    const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
    if ((await Promise.race([this.exited, timer])) === "timeout") this.kill();
    return this.exited;
  }

  /**
   * SIGKILL the PID-namespace init; the outer bwrap then exits by itself and is reaped here.
   * (Killing the outer one first would orphan the init to the host's PID 1, which may not reap.)
   * The outer one is killed too if it has not gone within a second.
   */
  kill(): void {
    if (this.done) return;
    if (this.initPid === undefined) {
      safeKill(this.child.pid, "SIGKILL");
      return;
    }
    safeKill(this.initPid, "SIGKILL");
    setTimeout(() => {
      if (!this.done) safeKill(this.child.pid, "SIGKILL");
    }, 1000).unref();
  }
}

export function sandboxEnv(spec: SandboxSpec, env: Record<string, string>): Record<string, string> {
  return { PATH: BASE_PATH, HOSTNAME: spec.hostname, HOME: "/", ...env };
}

function safeKill(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return constants.signals[sig] ?? 0;
}

/** Host PIDs whose parent is `pid` (a procfs scan: /proc/PID/task/PID/children may be absent). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) === pid) out.push(Number(name));
    } catch {
      // exited while scanning
    }
  }
  return out;
}
