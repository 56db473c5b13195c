import type { ExecOutcome, ProcessInfo, ProcessStartRequest } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { Spans } from "../../shared/spans.ts";
import type { EventBus } from "../events/bus.ts";
import type {
  ExecCall,
  ExecTarget,
  Executor,
  FileListing,
  ListOptions,
  ReadResult,
  SandboxFiles,
  SandboxLease,
  SandboxPorts,
  SandboxProcesses,
} from "../exec/executor.ts";
import { watchProcessExit } from "./process-watch.ts";

/**
 * How long a call that broke waits for its pod's status to explain it: a kubelet writes the
 * eviction or OOM kill within about a second of the kill (its status sync and PLEG relist).
 */
const POD_STATUS_WAIT_MS = 5_000;

/** A lease as the pipeline needs it; the lease manager's LeaseHandle fits. */
export type AcquiredSandbox = SandboxLease & { queueMs?: number; casMs?: number; sandboxId?: string };

export interface LeasedSandboxDeps {
  /** Takes one lease for this request (tenant and request id bound by the caller). */
  acquire(signal: AbortSignal): Promise<Result<AcquiredSandbox>>;
  executor: Executor;
  bus: EventBus;
  /** The agent's sandbox files; without them every file call answers `internal`. */
  files?: SandboxFiles;
  /**
   * Long-lived processes (http mode); without them every process call answers
   * `not_supported_in_api_mode`, or `not_supported_in_contract_mode` with EXEC_MODE=pydantic-http.
   */
  processes?: SandboxProcesses;
  /** The sandbox's ports (http mode); without them every port call answers `not_supported_in_api_mode`. */
  ports?: SandboxPorts;
  /**
   * Where a failure's upstream words go (a pino logger fits): an executor or files call answers
   * in our words and keeps what the pod, the exec server or the API server said as the error's
   * `cause`; it is logged here with the request id, never sent to the caller.
   */
  log?: { warn(obj: object, msg: string): void };
}

export interface LeasedSandboxContext {
  tenant: string;
  requestId: string;
  /** Aborts when the caller goes away: the running command is killed. */
  signal: AbortSignal;
  /** This request entered the wait queue at `position` (for streamed progress). */
  onQueued?: (position: number) => void;
  /** The request's timing spans: queue, acquire (the CAS), exec, release. */
  spans?: Spans;
}

/** One command as callers give it; the pipeline adds the kill signal. */
export type SandboxCommand = Omit<ExecCall, "signal">;

/** What the dashboard's timeline shows of a command: its first line, bounded. */
export function commandPreview(command: string, max = 120): string {
  const first = command.split("\n", 1)[0] ?? "";
  const more = first.length < command.length;
  return first.length > max ? `${first.slice(0, max - 1)}…` : more ? `${first} …` : first;
}

/**
 * The one "lease → run → release" pipeline that `/v1/exec` (one command), sandboxes (a use of a
 * sandbox) and chat (every command and file call of one request on one pod) share: every command
 * emits `exec.started` / `exec.finished`; commands and file calls alike run under the caller's
 * signal and the lease's `lost`, and a lost lease and a fence refusal are both `lease_lost` (or
 * the AppError the lease was lost with, e.g. `sandbox_not_found`); release is idempotent and
 * never throws.
 * The caller's answer does not wait for the recycle: release starts it and `recycled` settles when
 * it is done. The pod stays held (its Lease is not freed) until then, so nobody gets it earlier.
 */
export class LeasedSandbox {
  private released: Promise<void> | undefined;

  private constructor(
    private readonly deps: LeasedSandboxDeps,
    private readonly ctx: LeasedSandboxContext,
    readonly lease: AcquiredSandbox,
  ) {}

  /** Take a lease (queueing if needed). Errors: queue_timeout, shutting_down, request_cancelled. */
  static async take(deps: LeasedSandboxDeps, ctx: LeasedSandboxContext): Promise<Result<LeasedSandbox>> {
    const onQueued = ctx.onQueued;
    const stopQueueWatch = onQueued
      ? deps.bus.onType(["queue.entered"], (e) => {
          if (e.type === "queue.entered" && e.requestId === ctx.requestId) onQueued(e.data.position);
        })
      : () => {};
    try {
      const lease = await deps.acquire(ctx.signal);
      if (lease.ok && ctx.spans) {
        const cas = lease.value.casMs ?? 0;
        ctx.spans.add("queue", Math.max(0, (lease.value.queueMs ?? 0) - cas));
        ctx.spans.add("acquire", cas, "Lease CAS");
      }
      return lease.ok ? ok(new LeasedSandbox(deps, ctx, lease.value)) : lease;
    } finally {
      stopQueueWatch();
    }
  }

  get pod(): string {
    return this.lease.pod;
  }

  get queueMs(): number {
    return this.lease.queueMs ?? 0;
  }

  /** Run one command on the leased pod. The caller's signal and the lease's `lost` both kill it. */
  async run(call: SandboxCommand): Promise<Result<ExecOutcome>> {
    const { requestId, tenant, signal } = this.ctx;
    const pod = this.lease.pod;
    const preview = commandPreview(call.command);
    const common = { commandPreview: preview, queueMs: this.queueMs };
    this.deps.bus.emit({
      type: "exec.started",
      requestId,
      tenant,
      pod,
      data: { ...common, mode: this.deps.executor.mode },
    });
    let result: Result<ExecOutcome> = err(new AppError("internal", "the executor did not answer"));
    try {
      if (this.released) return (result = err(new AppError("internal", "the sandbox was already released")));
      if (this.lease.lost.aborted) return (result = err(this.lostError()));
      const endExec = this.ctx.spans?.start("exec");
      const outcome = await this.deps.executor.exec(this.lease, {
        ...call,
        signal: AbortSignal.any([signal, this.lease.lost]),
      });
      endExec?.();
      result = await this.explained(this.fenced(await this.oomChecked(outcome)));
      return result;
    } finally {
      this.deps.bus.emit({
        type: "exec.finished",
        requestId,
        tenant,
        pod,
        data: result.ok
          ? {
              ...common,
              exitCode: result.value.exitCode,
              durationMs: result.value.durationMs,
              timedOut: result.value.timedOut,
            }
          : { ...common, exitCode: null, durationMs: 0, timedOut: false, error: result.error.code },
      });
    }
  }

  /** A file, or a directory's entries (one level). */
  readFile(path: string, opts: { signal?: AbortSignal } = {}): Promise<Result<ReadResult>> {
    return this.onFiles(opts.signal, (files, signal) => files.read(this.lease, path, { signal }));
  }

  writeFile(
    path: string,
    body: ReadableStream<Uint8Array> | Uint8Array,
    opts: { maxBytes: number; signal?: AbortSignal },
  ): Promise<Result<{ path: string; size: number }>> {
    return this.onFiles(opts.signal, (files, signal) =>
      files.write(this.lease, path, body, { signal, maxBytes: opts.maxBytes }),
    );
  }

  listFiles(path: string, opts: ListOptions & { signal?: AbortSignal } = {}): Promise<Result<FileListing>> {
    const { signal: _s, ...rest } = opts;
    return this.onFiles(opts.signal, (files, signal) => files.list(this.lease, path, { ...rest, signal }));
  }

  removeFile(path: string, opts: { signal?: AbortSignal } = {}): Promise<Result<void>> {
    return this.onFiles(opts.signal, (files, signal) => files.remove(this.lease, path, { signal }));
  }

  /** One file call on the leased pod: the same signals and the same fence handling as `run`. */
  private onFiles<T>(
    own: AbortSignal | undefined,
    op: (files: SandboxFiles, signal: AbortSignal) => Promise<Result<T>>,
  ): Promise<Result<T>> {
    const files = this.deps.files;
    if (!files) return Promise.resolve(err(new AppError("internal", "this agent has no sandbox files")));
    return this.onPod(own, (signal) => op(files, signal));
  }

  /**
   * One call on the leased pod's processes, with the same signals and fence handling as `run`. A
   * stream's body lives under the same signal: it ends when the caller goes or the lease is lost.
   */
  onProcesses<T>(
    op: (processes: SandboxProcesses, target: ExecTarget, signal: AbortSignal) => Promise<Result<T>>,
    own?: AbortSignal,
  ): Promise<Result<T>> {
    const processes = this.deps.processes;
    if (!processes)
      return Promise.resolve(err(notInThisMode(this.deps.executor.mode, "long-lived processes")));
    return this.onPod(own, (signal) => op(processes, this.lease, signal));
  }

  /**
   * Start a long-lived process: `process.started` on the bus, and `process.exited` when this agent's
   * exit watch sees it end (process-watch.ts). Every start (public route or model tool) comes here.
   */
  async startProcess(req: ProcessStartRequest, own?: AbortSignal): Promise<Result<ProcessInfo>> {
    const processes = this.deps.processes;
    const started = await this.onProcesses((p, t, signal) => p.start(t, req, { signal }), own);
    if (!started.ok || !processes) return started;
    const info = started.value;
    const { requestId, tenant } = this.ctx;
    const { namespace, pod, podIP, fence } = this.lease;
    const common = {
      sandboxId: this.lease.sandboxId ?? null,
      pid: info.pid,
      commandPreview: commandPreview(info.command ?? (info.argv ?? []).join(" ")),
    };
    this.deps.bus.emit({
      type: "process.started",
      requestId,
      tenant,
      pod,
      data: { ...common, tty: info.tty },
    });
    const t0 = Date.parse(info.startedAt);
    watchProcessExit(processes, { namespace, pod, podIP, fence }, info.pid, (r) => {
      const how =
        "info" in r
          ? { exitCode: r.info.exitCode, signal: r.info.signal, timedOut: r.info.timedOut }
          : { exitCode: null, signal: null, timedOut: false, error: r.error.code };
      // The pod's own clock for both ends when it recorded the exit.
      const end = "info" in r && r.info.endedAt ? Date.parse(r.info.endedAt) : Date.now();
      const durationMs = Number.isFinite(end - t0) ? Math.max(0, end - t0) : 0;
      this.deps.bus.emit({
        type: "process.exited",
        requestId,
        tenant,
        pod,
        data: { ...common, ...how, durationMs },
      });
    });
    return started;
  }

  /**
   * One request to a port of the leased pod (a port link's), with the same signals and fence
   * handling as `run`; the response body lives under the same signal.
   */
  onPorts<T>(
    op: (ports: SandboxPorts, target: ExecTarget, signal: AbortSignal) => Promise<Result<T>>,
    own?: AbortSignal,
  ): Promise<Result<T>> {
    const ports = this.deps.ports;
    if (!ports) return Promise.resolve(err(notInThisMode(this.deps.executor.mode, "port links")));
    return this.onPod(own, (signal) => op(ports, this.lease, signal));
  }

  private async onPod<T>(
    own: AbortSignal | undefined,
    op: (signal: AbortSignal) => Promise<Result<T>>,
  ): Promise<Result<T>> {
    if (this.released) return err(new AppError("internal", "the sandbox was already released"));
    if (this.lease.lost.aborted) return err(this.lostError());
    const signals = [this.ctx.signal, this.lease.lost, ...(own ? [own] : [])];
    return this.explained(this.fenced(await op(AbortSignal.any(signals))));
  }

  /**
   * A command killed by SIGKILL that nobody asked to kill (or a shell reporting a child's as 137) is,
   * most often, the kernel's OOM killer: the exec server may answer before the kubelet kills the
   * container and reports `OOMKilled`, so the pod gets a moment to say so. A pod that stays healthy
   * leaves the result as it is (after that wait: a rare cost, for commands killed with -9).
   */
  private async oomChecked(r: Result<ExecOutcome>): Promise<Result<ExecOutcome>> {
    if (!r.ok || r.value.timedOut || this.ctx.signal.aborted) return r;
    if (r.value.signal !== "SIGKILL" && r.value.exitCode !== 137) return r;
    const why = await this.lease.ended?.(POD_STATUS_WAIT_MS);
    return why ? err(why) : r;
  }

  /**
   * A call that broke because its pod failed (evicted, OOM-killed) answers with why. The call
   * usually breaks first (the connection dies with the container) and the kubelet's status arrives
   * after, so a broken call waits a little for it; a lost lease or a gone sandbox was caused by the
   * recycle of a pod already seen failed, so they only look.
   */
  private async explained<T>(r: Result<T>): Promise<Result<T>> {
    if (r.ok || this.ctx.signal.aborted || !this.lease.ended) return r;
    const code = r.error.code;
    if (code !== "sandbox_failed" && code !== "lease_lost" && code !== "sandbox_not_found") return r;
    const why = await this.lease.ended(code === "sandbox_failed" ? POD_STATUS_WAIT_MS : 0);
    return why ? err(why) : r;
  }

  /** A renewal failure kills the call; a higher fence seen by the pod (stale_lease) means the same. */
  private fenced<T>(r: Result<T>): Result<T> {
    if (!r.ok && r.error.cause !== undefined) {
      const cause = r.error.cause instanceof Error ? r.error.cause.message : String(r.error.cause);
      this.deps.log?.warn(
        {
          requestId: this.ctx.requestId,
          pod: this.lease.pod,
          code: r.error.code,
          error: r.error.message,
          cause,
        },
        "sandbox call failed",
      );
    }
    const fenced = !r.ok && r.error.code === "stale_lease";
    return !this.ctx.signal.aborted && (this.lease.lost.aborted || fenced) ? err(this.lostError()) : r;
  }

  /**
   * Why the lease was lost: the AppError it was aborted with (lease_lost from renewal, or
   * sandbox_not_found for a sandbox deleted meanwhile), else — a fence refusal — lease_lost.
   */
  private lostError(): AppError {
    const reason: unknown = this.lease.lost.reason;
    return reason instanceof AppError ? reason : leaseLost(this.pod);
  }

  /** Starts release and recycle; idempotent; never throws. The promise is `recycled`. */
  release(): Promise<void> {
    // The contract says release never throws; a broken one must still not turn a reply into a crash.
    this.released ??= this.lease.release().catch(() => undefined);
    return this.released;
  }

  /** Settles when release and recycle are done (at once if release was never started). */
  get recycled(): Promise<void> {
    return this.released ?? Promise.resolve();
  }
}

/**
 * Take a lease, use it, release it on every path. The result is returned as soon as `use` ends;
 * the recycle runs on (`onReleased` gets the sandbox whose `recycled` tells when it is done).
 */
export async function withLeasedSandbox<T>(
  deps: LeasedSandboxDeps,
  ctx: LeasedSandboxContext & { onReleased?: (sandbox: LeasedSandbox) => void },
  use: (sandbox: LeasedSandbox) => Promise<Result<T>>,
): Promise<Result<T>> {
  const taken = await LeasedSandbox.take(deps, ctx);
  if (!taken.ok) return taken;
  try {
    return await use(taken.value);
  } finally {
    void taken.value.release();
    ctx.onReleased?.(taken.value);
  }
}

/** What a call that needs the pod's exec server answers on an agent without one. */
/** What needs our exec server in the pod, asked of an agent whose mode has none. */
function notInThisMode(mode: Executor["mode"], what: string): AppError {
  return mode === "pydantic-http"
    ? new AppError(
        "not_supported_in_contract_mode",
        `${what} need our exec server (EXEC_MODE=http); this agent's sandboxes run a server written to pydantic-ai-backends' http contract, which runs one command per request`,
      )
    : new AppError(
        "not_supported_in_api_mode",
        `${what} need the sandbox's exec server (EXEC_MODE=http); this agent runs commands over pods/exec`,
      );
}

function leaseLost(pod: string): AppError {
  return new AppError(
    "lease_lost",
    `the lease on sandbox ${pod} was lost (renewal failed or it was taken over); the command was stopped`,
  );
}
