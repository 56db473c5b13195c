import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, type WriteStream } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { constants, release, tmpdir } from "node:os";
import { join } from "node:path";
import { type ContainerSpec, containerUsers, type IdRange, ociSpec, USR_SYMLINKS } from "./oci-spec.ts";
import { runtimeDefaultSeccomp } from "./seccomp.ts";

export interface ContainerExit {
  /** Exit code of the container's command; 128+N when it died of signal N (as runc reports). */
  exitCode: number;
  signal: string | null;
  /** The container's cgroup saw an OOM kill: the kubelet's status says OOMKilled. */
  oomKilled: boolean;
}

/** Where the runtime keeps its state: runc's root and one bundle per container. */
export interface RuntimeDirs {
  /** runc --root (0700). */
  state: string;
  /** Bundles live here; the directory chain is traversable (0711) by the containers' host ids. */
  bundles: string;
}

const LOG_CAP_BYTES = 16 * 1024 * 1024;
const TAIL_CHARS = 2048;
const OOM_POLL_MS = 500;
const PID_WAIT_MS = 10_000;
/**
 * The container's PID 1, wrapped in `setpriv --pdeathsig` so it dies with runc (which dies with
 * the kubelet): nothing outlives a killed kubelet. It runs the command as its child, passes
 * SIGTERM on, exits with the command's status, and — as `docker --init` does — reaps orphans
 * that exec'd commands leave behind (a Node PID 1 would keep them as zombies).
 */
/** The init's $0: the exec server recognises it as the PID namespace's init, as it does bwrap's. */
const INIT_NAME = "devcluster-init";
const INIT = [
  `"$@" & c=$!`,
  `trap 'kill -TERM $c 2>/dev/null' TERM INT`,
  `while :; do wait $c; s=$?; kill -0 $c 2>/dev/null || exit $s; done`,
].join("\n");
export const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * One running container: `runc run` in the foreground (it forwards signals and reports the exit
 * status), with an OCI bundle built from the pod spec. The container's init has
 * PR_SET_PDEATHSIG, and runc itself dies with the kubelet, so a killed kubelet takes its
 * containers with it. On any OOM kill in the container's cgroup the whole container is killed
 * (what cgroup v2's memory.oom.group does for the kubelet) and its status says OOMKilled.
 */
export class Container {
  readonly exited: Promise<ContainerExit>;
  initPid: number | undefined;
  private child: ChildProcess | undefined;
  private readonly ready: Promise<number | undefined>;
  private resolveReady: (pid: number | undefined) => void = () => {};
  private done = false;
  private logged = 0;
  private tail = "";
  private oom = false;
  private oomFile: string | undefined;
  private oomBaseline = 0;
  private oomTimer: NodeJS.Timeout | undefined;
  private readonly bundle: string;

  constructor(
    readonly id: string,
    readonly spec: ContainerSpec,
    readonly ids: IdRange,
    private readonly dirs: RuntimeDirs,
    logPath: string,
  ) {
    this.bundle = join(dirs.bundles, id);
    this.ready = new Promise((r) => {
      this.resolveReady = r;
    });
    const log: WriteStream = createWriteStream(logPath, { flags: "a" });
    log.on("error", () => {});
    this.exited = this.run(log);
  }

  private async run(log: WriteStream): Promise<ContainerExit> {
    const fail = (message: string): ContainerExit => {
      this.tail = message;
      log.end(`kubelet: ${message}\n`);
      this.done = true;
      this.resolveReady(undefined);
      return { exitCode: 128, signal: null, oomKilled: false };
    };
    try {
      await this.writeBundle();
    } catch (err) {
      return fail(`cannot create the container's bundle: ${(err as Error).message}`);
    }
    const pidFile = join(this.bundle, "init.pid");
    const child = spawn(
      "setpriv",
      ["--pdeathsig=SIGKILL", "--", "runc", "--root", this.dirs.state, "run", "--pid-file", pidFile, this.id],
      { cwd: this.bundle, env: { PATH: BASE_PATH }, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    const onOutput = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString("utf8")).slice(-TAIL_CHARS);
      if (this.logged >= LOG_CAP_BYTES) return;
      this.logged += chunk.length;
      log.write(chunk);
    };
    child.stdout?.on("data", onOutput);
    child.stderr?.on("data", onOutput);
    void this.waitForPid(pidFile);
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
      (resolve) => {
        child.once("error", (error) => resolve({ code: null, signal: null, error }));
        child.once("close", (code, signal) => resolve({ code, signal }));
      },
    );
    this.checkOom();
    if (this.oomTimer) clearInterval(this.oomTimer);
    this.done = true;
    this.resolveReady(undefined);
    log.end(exit.error ? `kubelet: cannot start runc: ${exit.error.message}\n` : undefined);
    // runc removes a container it ran in the foreground; after a SIGKILL of runc it may not have
    // (its state directory is still there). Only then another runc process (~10 ms of CPU).
    if (existsSync(join(this.dirs.state, this.id)))
      await this.runc(["delete", "--force", this.id]).catch(() => {});
    await rm(this.bundle, { recursive: true, force: true }).catch(() => {});
    if (exit.error) return { exitCode: 128, signal: null, oomKilled: false };
    const oomKilled = this.oom;
    if (exit.signal) return { exitCode: 128 + signalNumber(exit.signal), signal: exit.signal, oomKilled };
    return { exitCode: oomKilled ? 137 : (exit.code ?? 128), signal: null, oomKilled };
  }

  /** The bundle: config.json, and an empty root (owned by the container's root) with the /usr symlinks. */
  private async writeBundle(): Promise<void> {
    const rootfs = join(this.bundle, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    for (const d of USR_SYMLINKS) await symlink(`usr/${d}`, join(rootfs, d));
    const etc = join(rootfs, "etc");
    await mkdir(etc, { mode: 0o755 });
    const users = containerUsers(this.spec);
    await writeFile(join(etc, "passwd"), users.passwd, { mode: 0o644 });
    await writeFile(join(etc, "group"), users.group, { mode: 0o644 });
    // runc creates mount points as the container's root, which must own the (read-only) root and
    // /etc (the other /etc files are bound onto points it makes there).
    for (const p of [rootfs, etc, join(etc, "passwd"), join(etc, "group")]) {
      await chown(p, this.ids.hostId, this.ids.hostId);
    }
    const seccomp = runtimeDefaultSeccomp(this.spec.capabilities, release());
    const argv = [
      "/usr/bin/setpriv",
      "--pdeathsig=SIGKILL",
      "--",
      "/bin/sh",
      "-c",
      INIT,
      INIT_NAME,
      ...this.spec.argv,
    ];
    const spec = ociSpec({ ...this.spec, argv }, this.ids, seccomp, `devcluster/${this.id}`);
    await writeFile(join(this.bundle, "config.json"), JSON.stringify(spec));
  }

  private async waitForPid(pidFile: string): Promise<void> {
    const deadline = Date.now() + PID_WAIT_MS;
    while (!this.done && Date.now() < deadline) {
      const text = await readFile(pidFile, "utf8").catch(() => "");
      const pid = Number(text.trim());
      if (text !== "" && Number.isInteger(pid) && pid > 0) {
        this.initPid = pid;
        this.watchOom(pid);
        this.resolveReady(pid);
        return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    this.resolveReady(undefined);
  }

  /** Polls the memory cgroup's OOM-kill counter (v1 memory.oom_control, v2 memory.events). */
  private watchOom(pid: number): void {
    try {
      const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
      const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
      if (v1) this.oomFile = `/sys/fs/cgroup/memory${v1.slice(v1.lastIndexOf(":") + 1)}/memory.oom_control`;
      else {
        const v2 = lines.find((l) => l.startsWith("0::"));
        if (v2) this.oomFile = `/sys/fs/cgroup${v2.slice(3)}/memory.events`;
      }
    } catch {
      return;
    }
    this.oomBaseline = this.oomKills();
    this.oomTimer = setInterval(() => this.checkOom(), OOM_POLL_MS);
    this.oomTimer.unref();
  }

  private oomKills(): number {
    if (!this.oomFile) return 0;
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(this.oomFile, "utf8"));
      return m ? Number(m[1]) : 0;
    } catch {
      return 0;
    }
  }

  /** Checks now (e.g. when an exec'd process died of SIGKILL); true if the container was OOM-killed. */
  checkOom(): boolean {
    if (this.oom) return true;
    if (this.oomKills() > this.oomBaseline) {
      this.oom = true;
      if (!this.done) void this.runc(["kill", this.id, "SIGKILL"]).catch(() => {});
    }
    return this.oom;
  }

  get oomKilled(): boolean {
    return this.oom;
  }

  /** Resolves with the init's host PID once runc has started it, or undefined if it failed first. */
  started(): Promise<number | undefined> {
    return this.ready;
  }

  /**
   * True when the container's process never ran: runc refused the spec, or the init could not
   * start the command (the shell's last words: "devcluster-init: 1: CMD: not found" / "Permission denied").
   */
  get failedToStart(): boolean {
    if (!this.done) return false;
    return (
      // A command that exits at once may be gone before its pid file was read: runc's own error decides.
      (this.initPid === undefined && /level=error msg=|kubelet: /.test(this.tail)) ||
      /(^|\n)devcluster-init: \d+: [^\n]*: (not found|Permission denied)\n?$/.test(this.tail)
    );
  }

  get outputTail(): string {
    return this.tail;
  }

  get running(): boolean {
    return !this.done;
  }

  /**
   * Runs `argv` in the container as its process (user, capabilities, no_new_privs, seccomp,
   * cgroup, namespaces) with `runc exec`; `pidFile` receives the process's host PID.
   */
  exec(argv: string[], pidFile: string): ChildProcess {
    return spawn(
      "runc",
      [
        "--root",
        this.dirs.state,
        "exec",
        "--pid-file",
        pidFile,
        "--cwd",
        this.spec.workingDir,
        this.id,
        ...argv,
      ],
      { env: { PATH: BASE_PATH }, stdio: ["pipe", "pipe", "pipe"] },
    );
  }

  /** SIGTERM to the container's init (as a runtime stops a container), SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<ContainerExit> {
    if (this.done) return this.exited;
    await Promise.race([this.ready, new Promise((r) => setTimeout(r, 2000).unref())]);
    if (this.initPid !== undefined) safeKill(this.initPid, "SIGTERM");
    else safeKill(this.child?.pid, "SIGKILL");
    const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
    if ((await Promise.race([this.exited, timer])) === "timeout") this.kill();
    return this.exited;
  }

  /** SIGKILL the init: the kernel kills everything in the PID namespace; runc then exits. */
  kill(): void {
    if (this.done) return;
    if (this.initPid !== undefined) safeKill(this.initPid, "SIGKILL");
    else safeKill(this.child?.pid, "SIGKILL");
  }

  private runc(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const p = spawn("runc", ["--root", this.dirs.state, ...args], {
        env: { PATH: BASE_PATH },
        stdio: "ignore",
      });
      const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
      p.once("error", reject);
      p.once("close", (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`runc ${args[0]} exited ${code}`));
      });
    });
  }
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

/**
 * The runtime's own directory in the host's temp dir: runc's state (0700) and the bundles, on a
 * path every container's host root id can traverse (0711) — runc sets up the root file system
 * as that id, so a bundle below a 0700 directory (a test's mkdtemp) could not be mounted.
 */
export async function makeRuntimeDirs(): Promise<RuntimeDirs & { root: string; images: string }> {
  const root = await mkdtemp(join(tmpdir(), "devcluster-runc-"));
  await chmod(root, 0o711);
  const dirs = {
    root,
    state: join(root, "state"),
    bundles: join(root, "bundles"),
    images: join(root, "images"),
  };
  await mkdir(dirs.state, { mode: 0o700 });
  await mkdir(dirs.bundles, { mode: 0o711 });
  await mkdir(dirs.images, { mode: 0o711 });
  return dirs;
}
