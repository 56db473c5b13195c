import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { KubeConfig } from "@kubernetes/client-node";
import { EnvSchema, type ExecOutcome, LIMITS, WorkspacePathSchema } from "../../shared/api.ts";
import { AppError, err, ok, parseOrError, type Result } from "../../shared/errors.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";
import { exitCodeOf, PodsExec } from "./pods-exec.ts";
import { CWD_REFUSED_EXIT, CWD_REFUSED_PREFIX, killArgv, sizedStdin, wrapperArgv } from "./remote-wrapper.ts";

export interface ApiExecutorOptions {
  kubeConfig: KubeConfig;
  /** Shared with the api-mode files (main.ts builds one); one of its own otherwise. */
  podsExec?: PodsExec;
  /** The sandbox pod's container (k8s/base/sandbox-pod-template.json names it "sandbox"). */
  container?: string;
  outputCapBytes?: number;
  resultGraceMs?: number;
  /** Until the WebSocket is open. */
  connectTimeoutMs?: number;
}

/** Exit status of a shell whose child died of SIGKILL: what the wrapper reports when `timeout` fired. */
const KILLED_EXIT = 137;

/**
 * `api` mode: the pods/exec subresource (v5 or v4 channel protocol, whichever the kubelet offers;
 * stdin never needs v5's half-close, see remote-wrapper.ts) through client-node, for images
 * without the exec server. Fencing: there is no exec server to refuse a stale fencing token, so
 * this mode relies on the lease alone (the caller checks it is still held before calling, and
 * aborts the call when it is lost).
 */
export class ApiExecutor implements Executor {
  readonly mode = "api" as const;
  readonly #pods: PodsExec;
  readonly #o: Required<Omit<ApiExecutorOptions, "kubeConfig" | "podsExec">>;

  constructor(opts: ApiExecutorOptions) {
    this.#pods = opts.podsExec ?? new PodsExec(opts.kubeConfig);
    this.#o = {
      container: opts.container ?? "sandbox",
      outputCapBytes: opts.outputCapBytes ?? LIMITS.outputCapBytes,
      resultGraceMs: opts.resultGraceMs ?? RESULT_GRACE_MS,
      connectTimeoutMs: opts.connectTimeoutMs ?? 15_000,
    };
  }

  async exec(target: ExecTarget, call: ExecCall): Promise<Result<ExecOutcome>> {
    if (call.signal.aborted) return err(abortError(call.signal));
    // The exec server validates these in http mode; here nothing remote does, so check them here.
    if (call.command.length === 0) return err(new AppError("invalid_request", "command: must not be empty"));
    if (
      !Number.isInteger(call.timeoutMs) ||
      call.timeoutMs < 1 ||
      call.timeoutMs > LIMITS.maxTimeoutSeconds * 1000
    ) {
      return err(
        new AppError(
          "invalid_request",
          `timeoutMs: must be an integer from 1 to ${LIMITS.maxTimeoutSeconds * 1000}`,
        ),
      );
    }
    const cwd = parseOrError(WorkspacePathSchema, call.cwd ?? "/workspace", "cwd");
    if (!cwd.ok) return cwd;
    const env = parseOrError(EnvSchema, call.env ?? {}, "env");
    if (!env.ok) return env;

    const id = randomBytes(8).toString("hex");
    const argv = wrapperArgv({
      command: call.command,
      timeoutMs: call.timeoutMs,
      cwd: cwd.value,
      env: env.value,
      id,
      stdinBytes: call.stdin === undefined ? undefined : Buffer.byteLength(call.stdin),
    });
    const result = await this.#run(target, argv, call);
    if (!result.ok) {
      // The socket is gone but on a real cluster the command is not: kill its group remotely.
      if (result.remote !== "completed") await this.#killRemote(target, id);
      return err(result.error);
    }
    return ok(result.value);
  }

  async #run(
    target: ExecTarget,
    argv: string[],
    call: ExecCall,
  ): Promise<
    { ok: true; value: ExecOutcome } | { ok: false; error: AppError; remote: "completed" | "unknown" }
  > {
    const o = this.#o;
    const capture = new OutputCapture(o.outputCapBytes);
    const started = performance.now();
    const sink = (stream: "stdout" | "stderr") =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          const kept = capture.push(stream, chunk);
          if (kept.byteLength > 0) call.onOutput?.(stream, kept);
          done();
        },
      });
    const stdout = sink("stdout");
    const stderr = sink("stderr");
    const stdin = call.stdin === undefined ? null : sizedStdin(Buffer.from(call.stdin));

    const end = await this.#pods.run({
      target,
      container: o.container,
      argv,
      stdout,
      stderr,
      stdin,
      signal: call.signal,
      connectTimeoutMs: o.connectTimeoutMs,
      deadlineMs: call.timeoutMs + o.resultGraceMs,
      deadlineMessage: `no exit status from ${target.pod} within ${call.timeoutMs + o.resultGraceMs} ms`,
    });
    if (!end.ok) return { ok: false, error: end.error, remote: "unknown" };
    const code = exitCodeOf(end.status);
    if (code instanceof AppError) return { ok: false, error: code, remote: "completed" };
    const out = capture.finish(undefined, call.outputEncoding);
    if (code === CWD_REFUSED_EXIT && out.stderr.startsWith(CWD_REFUSED_PREFIX) && out.stdoutBytes === 0) {
      const message = out.stderr.slice("pi-sandbox: ".length).trim();
      return { ok: false, error: new AppError("invalid_request", message), remote: "completed" };
    }
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    // `timeout -s KILL` fires only once the time is up, and the clock here started earlier
    // than the remote one: a 137 after the deadline is the timeout; before it, the command's own.
    const timedOut = code === KILLED_EXIT && durationMs >= call.timeoutMs;
    return {
      ok: true,
      value: {
        exitCode: timedOut ? null : code,
        signal: timedOut ? "SIGKILL" : null,
        timedOut,
        ...out,
        durationMs,
      },
    };
  }

  /** Best effort, bounded: a second exec that SIGKILLs the group the wrapper recorded. */
  async #killRemote(target: ExecTarget, id: string): Promise<void> {
    // At least one stream must be requested; the script prints nothing anyway.
    await this.#pods.run({
      target,
      container: this.#o.container,
      argv: killArgv(id),
      stdout: discard(),
      stderr: null,
      stdin: null,
      signal: new AbortController().signal,
      deadlineMs: 5_000,
      deadlineMessage: `killing ${id} on ${target.pod} took over 5 s`,
    });
  }
}

function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, done) {
      done();
    },
  });
}
