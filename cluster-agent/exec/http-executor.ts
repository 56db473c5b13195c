import { Agent, type ClientRequest, type IncomingMessage, request } from "node:http";
import { type ExecOutcome, LIMITS } from "../../shared/api.ts";
import { AppError, type ErrorCode, err, ok, type Result } from "../../shared/errors.ts";
import {
  EXEC_SERVER_PATHS,
  EXEC_SERVER_PORT,
  type ExecRequestBody,
  FENCE_HEADER,
  isOutputFrame,
  isResultFrame,
  type ResultFrame,
} from "../sandbox-server/protocol.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";
import { podExecToken } from "./pod-token.ts";

export interface HttpExecutorOptions {
  /** The agent's pool token: each pod's exec token is derived from it (pod-token.ts). */
  poolToken: string;
  /** The exec server's port in every sandbox pod. */
  port?: number;
  outputCapBytes?: number;
  /** Extra wait for the result beyond the command's timeout. */
  resultGraceMs?: number;
  /** Until the response headers arrive (the server sends them as soon as the shell has started). */
  startTimeoutMs?: number;
  agent?: Agent;
}

/** A warm-up that takes longer than this is not worth keeping: the first exec connects itself. */
const WARM_TIMEOUT_MS = 2_000;

/** The exec server's own error codes, as the agent's callers should see them. */
function mapServerError(status: number, code: string | undefined, message: string): AppError {
  const known: Record<string, ErrorCode> = {
    stale_lease: "stale_lease",
    invalid_request: "invalid_request",
    payload_too_large: "payload_too_large",
  };
  const mapped = code ? known[code] : undefined;
  if (mapped) return new AppError(mapped, message);
  // 401 means the agent and the pool disagree on the token: the sandbox is unusable, not the caller.
  return new AppError(
    "sandbox_failed",
    `exec server answered ${status}${code ? ` ${code}` : ""}: ${message}`,
  );
}

/** `http` mode: POST /exec on the pod's exec server, reading its ndjson frames as they arrive. */
export class HttpExecutor implements Executor {
  readonly mode = "http" as const;
  readonly #opts: Required<Omit<HttpExecutorOptions, "agent">> & { agent: Agent };

  constructor(opts: HttpExecutorOptions) {
    this.#opts = {
      poolToken: opts.poolToken,
      port: opts.port ?? EXEC_SERVER_PORT,
      outputCapBytes: opts.outputCapBytes ?? LIMITS.outputCapBytes,
      resultGraceMs: opts.resultGraceMs ?? RESULT_GRACE_MS,
      startTimeoutMs: opts.startTimeoutMs ?? 15_000,
      agent: opts.agent ?? new Agent({ keepAlive: true, maxSockets: 256 }),
    };
  }

  /** GET /health through the kept-alive agent: the socket stays in the pool for the first exec. */
  warm(podIP: string): void {
    const o = this.#opts;
    const req = request(
      { host: podIP, port: o.port, path: EXEC_SERVER_PATHS.health, method: "GET", agent: o.agent },
      (res) => res.resume(),
    );
    req.setTimeout(WARM_TIMEOUT_MS, () => req.destroy());
    // A pod that is not reachable yet is simply not warmed; its first command connects itself.
    req.on("error", () => {});
    req.end();
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
    const body = JSON.stringify(payload);
    const capture = new OutputCapture(o.outputCapBytes);

    return new Promise((resolve) => {
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const settle = (r: Result<ExecOutcome>) => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        call.signal.removeEventListener("abort", onAbort);
        // Closing the connection is what tells the server to kill the command's group.
        if (!r.ok) req.destroy();
        resolve(r);
      };
      const fail = (message: string, code: ErrorCode = "sandbox_failed") =>
        settle(err(new AppError(code, message)));
      const onAbort = () => settle(err(abortError(call.signal)));

      let req: ClientRequest;
      const send = (firstTry: boolean) => {
        req = request({
          host: target.podIP,
          port: o.port,
          path: EXEC_SERVER_PATHS.exec,
          method: "POST",
          agent: o.agent,
          headers: {
            authorization: `Bearer ${podExecToken(o.poolToken, target.namespace, target.pod)}`,
            [FENCE_HEADER]: String(target.fence),
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          },
        });
        let answered = false;
        req.on("error", (e: NodeJS.ErrnoException) => {
          // A kept-alive socket the server closed while idle: the request never reached it, so
          // sending it again cannot run the command twice (Node's documented retry case).
          if (firstTry && !answered && !settled && req.reusedSocket && e.code === "ECONNRESET") send(false);
          else fail(`exec request to ${target.pod} failed: ${e.message}`);
        });
        req.on("response", (res) => {
          answered = true;
          clearTimeout(startTimer);
          if (res.statusCode !== 200) readError(res).then((e) => settle(err(e)));
          else readFrames(res);
        });
        req.end(body);
      };
      call.signal.addEventListener("abort", onAbort, { once: true });
      timers.push(
        setTimeout(
          () => fail(`no result from ${target.pod} within ${call.timeoutMs + o.resultGraceMs} ms`),
          call.timeoutMs + o.resultGraceMs,
        ),
      );
      const startTimer = setTimeout(
        () => fail(`exec server on ${target.pod} did not start the command within ${o.startTimeoutMs} ms`),
        o.startTimeoutMs,
      );
      timers.push(startTimer);
      send(true);

      const readError = (res: IncomingMessage): Promise<AppError> =>
        new Promise((done) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size <= 64 * 1024) chunks.push(c);
          });
          const finish = () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let code: string | undefined;
            let message = text.slice(0, 500) || `HTTP ${res.statusCode}`;
            try {
              const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
              if (typeof parsed.error?.code === "string") code = parsed.error.code;
              if (typeof parsed.error?.message === "string") message = parsed.error.message;
            } catch {
              // not JSON: keep the raw text
            }
            done(mapServerError(res.statusCode ?? 0, code, message));
          };
          res.on("end", finish);
          res.on("error", finish);
          res.on("aborted", finish);
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
