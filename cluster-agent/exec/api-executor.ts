import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { KubeConfig } from "@kubernetes/client-node";
import { type ExecOutcome, LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";
import { exitCodeOf, PodsExec } from "./pods-exec.ts";
import { checkedWrapperArgv, killArgv, sizedStdin, wrapperOutcome } from "./remote-wrapper.ts";

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
    const id = randomBytes(8).toString("hex");
    const argv = checkedWrapperArgv(call, id);
    if (!argv.ok) return argv;
    const result = await this.#run(target, argv.value, call);
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
    const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    const outcome = wrapperOutcome(
      code,
      out,
      out.stdoutBytes === 0 ? out.stderr : "",
      durationMs,
      call.timeoutMs,
    );
    return outcome.ok ? outcome : { ...outcome, remote: "completed" };
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
