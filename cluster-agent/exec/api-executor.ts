import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { Exec, type KubeConfig, type V1Status } from "@kubernetes/client-node";
// Not re-exported by the package index; its constructor is the documented way to pass a socket factory.
import { WebSocketHandler } from "@kubernetes/client-node/dist/web-socket-handler.js";
import WebSocket from "ws";
import { type ExecOutcome, LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";
import { checkedWrapperArgv, killArgv, sizedStdin, wrapperOutcome } from "./remote-wrapper.ts";

export interface ApiExecutorOptions {
  kubeConfig: KubeConfig;
  /** The sandbox pod's container (k8s/base/sandbox-pod-template.json names it "sandbox"). */
  container?: string;
  outputCapBytes?: number;
  resultGraceMs?: number;
  /** Until the WebSocket is open. */
  connectTimeoutMs?: number;
}

/** Reads the exit code out of the status channel's v1 Status. */
export function exitCodeOf(status: V1Status): number | AppError {
  if (status.status === "Success") return 0;
  if (status.reason === "NonZeroExitCode") {
    const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
    const n = Number(cause?.message);
    if (Number.isInteger(n)) return n;
  }
  return new AppError(
    "sandbox_failed",
    `pods/exec failed: ${status.reason ?? "unknown"}: ${status.message ?? ""}`,
  );
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
  readonly #exec: Exec;
  readonly #o: Required<Omit<ApiExecutorOptions, "kubeConfig">>;

  constructor(opts: ApiExecutorOptions) {
    this.#exec = new Exec(opts.kubeConfig, new WebSocketHandler(opts.kubeConfig, statusSocket));
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

  #run(
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

    return new Promise((resolve) => {
      let settled = false;
      let socket: WebSocket | undefined;
      let status: V1Status | undefined;
      const timers: NodeJS.Timeout[] = [];
      const settle = (
        r: { ok: true; value: ExecOutcome } | { ok: false; error: AppError; remote: "completed" | "unknown" },
      ) => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        call.signal.removeEventListener("abort", onAbort);
        stdin?.destroy();
        if (socket && socket.readyState !== socket.CLOSED) socket.terminate();
        resolve(r);
      };
      const fail = (message: string, cause?: Error) =>
        settle({
          ok: false,
          error: new AppError("sandbox_failed", message, cause ? { cause } : {}),
          remote: "unknown",
        });
      const onAbort = () => settle({ ok: false, error: abortError(call.signal), remote: "unknown" });
      call.signal.addEventListener("abort", onAbort, { once: true });

      const connectTimer = setTimeout(
        () => fail(`pods/exec to ${target.pod} did not open within ${o.connectTimeoutMs} ms`),
        o.connectTimeoutMs,
      );
      timers.push(
        connectTimer,
        setTimeout(
          () => fail(`no exit status from ${target.pod} within ${call.timeoutMs + o.resultGraceMs} ms`),
          call.timeoutMs + o.resultGraceMs,
        ),
      );

      const complete = () => {
        if (!status) return;
        const code = exitCodeOf(status);
        if (code instanceof AppError) {
          settle({ ok: false, error: code, remote: "completed" });
          return;
        }
        const out = capture.finish(undefined, call.outputEncoding);
        const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
        const refusal = out.stdoutBytes === 0 ? out.stderr : "";
        const outcome = wrapperOutcome(code, out, refusal, durationMs, call.timeoutMs);
        settle(outcome.ok ? outcome : { ...outcome, remote: "completed" });
      };

      this.#exec
        .exec(target.namespace, target.pod, o.container, argv, stdout, stderr, stdin, false, (s) => {
          status = s;
          // client-node ends both sinks just before this callback: wait for the writes to land.
          let pending = 2;
          const one = () => {
            pending -= 1;
            if (pending === 0) complete();
          };
          for (const w of [stdout, stderr]) {
            if (w.writableFinished) one();
            else w.once("finish", one);
          }
        })
        .then(
          (ws) => {
            clearTimeout(connectTimer);
            if (settled) {
              ws.terminate();
              return;
            }
            socket = ws;
            ws.on("error", () => {});
            ws.on("close", (code) => {
              // The status frame always precedes the close; give its sinks a tick to finish.
              setImmediate(() => {
                if (!status)
                  fail(`pods/exec socket to ${target.pod} closed (code ${code}) without an exit status`);
              });
            });
          },
          // client-node's words (the API server's address, its answer) are the cause: logged, not answered.
          (e: unknown) => fail(`pods/exec to ${target.pod} could not connect`, connectFailure(e)),
        );
    });
  }

  /** Best effort, bounded: a second exec that SIGKILLs the group the wrapper recorded. */
  async #killRemote(target: ExecTarget, id: string): Promise<void> {
    const done = new Promise<void>((resolve) => {
      this.#exec
        // At least one stream must be requested; the script prints nothing anyway.
        .exec(
          target.namespace,
          target.pod,
          this.#o.container,
          killArgv(id),
          discard(),
          null,
          null,
          false,
          () => resolve(),
        )
        .then(
          (ws) => {
            ws.on("close", () => resolve());
            ws.on("error", () => resolve());
          },
          () => resolve(),
        );
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, 5_000)))]);
    clearTimeout(timer);
  }
}

function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, done) {
      done();
    },
  });
}

const STATUS_BODY_MAX = 64 * 1024;
const STATUS_BODY_TIMEOUT_MS = 5_000;

/**
 * A WebSocket whose refused handshake reports the API server's Status message (e.g. "error
 * dialing backend: …") instead of ws's bare "Unexpected server response: 500".
 */
function statusSocket(uri: string, protocols: string[], opts: WebSocket.ClientOptions): WebSocket {
  const ws = new WebSocket(uri, protocols, opts);
  ws.on("unexpected-response", (req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => {
      clearTimeout(timer);
      const body = Buffer.concat(chunks).toString("utf8");
      let message = body.trim();
      try {
        const parsed = JSON.parse(body) as { message?: unknown };
        if (typeof parsed.message === "string") message = parsed.message;
      } catch {
        // not a Status body: keep the text
      }
      req.destroy();
      ws.emit("error", new Error(`${res.statusCode ?? 0}${message === "" ? "" : `: ${message}`}`));
    };
    const timer = setTimeout(finish, STATUS_BODY_TIMEOUT_MS);
    res.on("data", (c: Buffer) => {
      if (size < STATUS_BODY_MAX) chunks.push(c);
      size += c.length;
    });
    res.once("end", finish);
    res.once("error", finish);
  });
  return ws;
}

/** What client-node rejected a pods/exec connection with (an Error, or a ws ErrorEvent), as an Error. */
export function connectFailure(e: unknown): Error {
  return e instanceof Error ? e : new Error(describeWsError(e));
}

function describeWsError(e: unknown): string {
  if (typeof e === "object" && e !== null && "message" in e)
    return String((e as { message: unknown }).message);
  return String(e);
}
