import type { IncomingMessage } from "node:http";
import { type ExecOutcome, LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import {
  EXEC_SERVER_PATHS,
  type ExecRequestBody,
  isOutputFrame,
  isResultFrame,
  type ResultFrame,
} from "../sandbox-server/protocol.ts";
import {
  answerError,
  type ExecServerAccess,
  type ExecServerClient,
  execServerClient,
} from "./exec-server-client.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";

export type HttpExecutorOptions = ExecServerAccess & {
  outputCapBytes?: number;
  /** Extra wait for the result beyond the command's timeout. */
  resultGraceMs?: number;
  /** Until the response headers arrive (the server sends them as soon as the shell has started). */
  startTimeoutMs?: number;
};

/** An error answer is small; reading it must not outlast this. */
const ERROR_BODY_TIMEOUT_MS = 5_000;

/** `http` mode: POST /exec on the pod's exec server, reading its ndjson frames as they arrive. */
export class HttpExecutor implements Executor {
  readonly mode = "http" as const;
  readonly #client: ExecServerClient;
  readonly #opts: { outputCapBytes: number; resultGraceMs: number; startTimeoutMs: number };

  constructor(opts: HttpExecutorOptions) {
    this.#client = execServerClient(opts);
    this.#opts = {
      outputCapBytes: opts.outputCapBytes ?? LIMITS.outputCapBytes,
      resultGraceMs: opts.resultGraceMs ?? RESULT_GRACE_MS,
      startTimeoutMs: opts.startTimeoutMs ?? 15_000,
    };
  }

  /** Warms the pod's connection in the one exec-server pool: commands and files both use it. */
  warm(podIP: string): void {
    this.#client.warm(podIP);
  }

  exec(target: ExecTarget, call: ExecCall): Promise<Result<ExecOutcome>> {
    if (call.signal.aborted) return Promise.resolve(err(abortError(call.signal)));
    const o = this.#opts;
    const payload: ExecRequestBody = {
      command: call.command,
      timeoutMs: call.timeoutMs,
      ...(call.stdin !== undefined ? { stdin: call.stdin } : {}),
      ...(call.cwd !== undefined ? { cwd: call.cwd } : {}),
      ...(call.env !== undefined ? { env: call.env } : {}),
    };
    const capture = new OutputCapture(o.outputCapBytes);

    return new Promise((resolve) => {
      let settled = false;
      let response: IncomingMessage | undefined;
      // Ends the call when this executor gives up (a timeout, a broken stream) before its head.
      const stop = new AbortController();
      const settle = (r: Result<ExecOutcome>) => {
        if (settled) return;
        settled = true;
        clearTimeout(resultTimer);
        call.signal.removeEventListener("abort", onAbort);
        // Closing the connection is what tells the server to kill the command's group.
        if (!r.ok) {
          response?.destroy();
          stop.abort();
        }
        resolve(r);
      };
      const fail = (message: string) => settle(err(new AppError("sandbox_failed", message)));
      const onAbort = () => settle(err(abortError(call.signal)));
      call.signal.addEventListener("abort", onAbort, { once: true });
      const resultTimer = setTimeout(
        () => fail(`no result from ${target.pod} within ${call.timeoutMs + o.resultGraceMs} ms`),
        call.timeoutMs + o.resultGraceMs,
      );
      void this.#client
        .call(target, {
          method: "POST",
          path: EXEC_SERVER_PATHS.exec,
          headers: { "content-type": "application/json" },
          body: JSON.stringify(payload),
          signal: AbortSignal.any([call.signal, stop.signal]),
          headTimeoutMs: o.startTimeoutMs,
        })
        .then((r) => {
          if (!r.ok) return settle(r);
          response = r.value;
          if (settled) return void r.value.destroy();
          if (r.value.statusCode === 200) return readFrames(r.value);
          return answerError(r.value, ERROR_BODY_TIMEOUT_MS).then((e) => settle(err(e)));
        });

      const readFrames = (res: IncomingMessage) => {
        let pending = "";
        let result: ResultFrame | undefined;
        const onLine = (line: string) => {
          if (line.length === 0) return;
          let frame: Record<string, unknown>;
          try {
            frame = JSON.parse(line) as Record<string, unknown>;
          } catch {
            fail(`exec server on ${target.pod} sent a malformed frame`);
            return;
          }
          if (isOutputFrame(frame)) {
            const kept = capture.push(frame.type, Buffer.from(frame.data, "base64"));
            if (kept.byteLength > 0) call.onOutput?.(frame.type, kept);
          } else if (isResultFrame(frame)) {
            result = frame;
          }
        };
        res.setEncoding("utf8");
        res.on("data", (text: string) => {
          if (settled) return;
          pending += text;
          let nl = pending.indexOf("\n");
          while (nl >= 0 && !settled) {
            onLine(pending.slice(0, nl));
            pending = pending.slice(nl + 1);
            nl = pending.indexOf("\n");
          }
        });
        const complete = (): boolean => {
          if (!result) return false;
          const out = capture.finish(result, call.outputEncoding);
          settle(
            ok({
              exitCode: result.exitCode,
              signal: result.signal,
              timedOut: result.timedOut,
              ...out,
              durationMs: result.durationMs,
            }),
          );
          return true;
        };
        res.on("end", () => {
          if (pending.length > 0) onLine(pending);
          if (!complete())
            fail(`exec server on ${target.pod} closed the stream without a result (sandbox died?)`);
        });
        // A result that arrived before the connection broke still stands.
        const broken = () =>
          complete() ||
          fail(`connection to the exec server on ${target.pod} broke mid-stream (sandbox died?)`);
        res.on("aborted", broken);
        res.on("error", broken);
        res.on("close", () => {
          if (!res.complete) broken();
        });
      };
    });
  }
}
