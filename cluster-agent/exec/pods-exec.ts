import type { Readable, Writable } from "node:stream";
import { Exec, type KubeConfig, type V1Status } from "@kubernetes/client-node";
// Not re-exported by the package index; its constructor is the documented way to pass a socket factory.
import { WebSocketHandler } from "@kubernetes/client-node/dist/web-socket-handler.js";
import WebSocket from "ws";
import { AppError } from "../../shared/errors.ts";
import { abortError, type ExecTarget } from "./executor.ts";

/**
 * The one pods/exec runner of api mode: commands (api-executor.ts) and file operations
 * (api-files.ts) both go through `run`, so a socket that closes without a status, a refused
 * handshake, an abort or a deadline end the same way for both.
 */

export interface PodsExecCall {
  target: ExecTarget;
  container: string;
  argv: string[];
  stdout: Writable;
  stderr: Writable | null;
  stdin: Readable | null;
  signal: AbortSignal;
  /** Until the WebSocket is open; the whole-run deadline alone when absent. */
  connectTimeoutMs?: number;
  /** For the whole run, from the call. */
  deadlineMs: number;
  /** The words of a missed deadline (the caller knows what was being done). */
  deadlineMessage: string;
}

/** A status arrived (after the sinks finished), or the run failed without one. */
export type PodsExecEnd = { ok: true; status: V1Status } | { ok: false; error: AppError };

export class PodsExec {
  readonly #exec: Exec;

  constructor(kubeConfig: KubeConfig) {
    this.#exec = new Exec(kubeConfig, new WebSocketHandler(kubeConfig, statusSocket));
  }

  run(call: PodsExecCall): Promise<PodsExecEnd> {
    if (call.signal.aborted) return Promise.resolve({ ok: false, error: abortError(call.signal) });
    const { target } = call;
    return new Promise((resolve) => {
      let settled = false;
      let socket: WebSocket | undefined;
      let status: V1Status | undefined;
      const timers: NodeJS.Timeout[] = [];
      const settle = (end: PodsExecEnd) => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        call.signal.removeEventListener("abort", onAbort);
        call.stdin?.destroy();
        if (socket && socket.readyState !== socket.CLOSED) socket.terminate();
        resolve(end);
      };
      const fail = (message: string, cause?: Error) =>
        settle({ ok: false, error: new AppError("sandbox_failed", message, cause ? { cause } : {}) });
      const onAbort = () => settle({ ok: false, error: abortError(call.signal) });
      call.signal.addEventListener("abort", onAbort, { once: true });

      let connectTimer: NodeJS.Timeout | undefined;
      if (call.connectTimeoutMs !== undefined) {
        const ms = call.connectTimeoutMs;
        connectTimer = setTimeout(() => fail(`pods/exec to ${target.pod} did not open within ${ms} ms`), ms);
        timers.push(connectTimer);
      }
      timers.push(setTimeout(() => fail(call.deadlineMessage), call.deadlineMs));

      const sinks = call.stderr ? [call.stdout, call.stderr] : [call.stdout];
      this.#exec
        .exec(
          target.namespace,
          target.pod,
          call.container,
          call.argv,
          call.stdout,
          call.stderr,
          call.stdin,
          false,
          (s) => {
            status = s;
            // client-node ends the sinks just before this callback: wait for their writes to land.
            let pending = sinks.length;
            const one = () => {
              pending -= 1;
              if (pending === 0) settle({ ok: true, status: s });
            };
            for (const w of sinks) {
              if (w.writableFinished) one();
              else w.once("finish", one);
            }
          },
        )
        .then(
          (ws) => {
            clearTimeout(connectTimer);
            if (settled) {
              ws.terminate();
              return;
            }
            socket = ws;
            ws.on("error", () => {});
            // The status frame always precedes the close; a close without one is a failure now,
            // not a wait for the whole deadline. A tick lets the status callback run first.
            ws.on("close", (code) =>
              setImmediate(() => {
                if (!status)
                  fail(`pods/exec socket to ${target.pod} closed (code ${code}) without an exit status`);
              }),
            );
          },
          // client-node's words (the API server's address, its answer) are the cause: logged, not answered.
          (e: unknown) => fail(`pods/exec to ${target.pod} could not connect`, connectFailure(e)),
        );
    });
  }
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
function connectFailure(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === "object" && e !== null && "message" in e)
    return new Error(String((e as { message: unknown }).message));
  return new Error(String(e));
}
