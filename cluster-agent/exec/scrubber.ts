import { Agent, request } from "node:http";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import {
  EXEC_SERVER_PATHS,
  EXEC_SERVER_PORT,
  FENCE_HEADER,
  type InspectResult,
  type ResetResult,
} from "../sandbox-server/protocol.ts";
import type { ExecTarget, Scrubber } from "./executor.ts";
import { podExecToken } from "./pod-token.ts";

export interface HttpScrubberOptions {
  /** The agent's pool token: each pod's exec token is derived from it (pod-token.ts). */
  poolToken: string;
  port?: number;
  /** Per request; /reset of a fork bomb may take a few seconds. */
  timeoutMs?: number;
  agent?: Agent;
}

interface Answer {
  status: number;
  json: unknown;
}

/** `scrub` recycling: /reset, then /inspect proves the pod is clean before it is handed out again. */
export class HttpScrubber implements Scrubber {
  readonly #o: Required<HttpScrubberOptions>;

  constructor(opts: HttpScrubberOptions) {
    this.#o = {
      poolToken: opts.poolToken,
      port: opts.port ?? EXEC_SERVER_PORT,
      timeoutMs: opts.timeoutMs ?? 15_000,
      agent: opts.agent ?? new Agent({ keepAlive: true }),
    };
  }

  async scrub(target: ExecTarget): Promise<Result<{ killed: number; removed: number }>> {
    const reset = await this.#call(target, "POST", EXEC_SERVER_PATHS.reset);
    if (!reset.ok) return reset;
    // Checked field by field below: a broken or foreign server must not pass for a clean one.
    const r = reset.value.json as Partial<ResetResult> | null;
    if (reset.value.status !== 200 || typeof r?.killed !== "number" || typeof r.removed !== "number") {
      return err(failure(target, "/reset", reset.value));
    }
    const inspect = await this.#call(target, "GET", EXEC_SERVER_PATHS.inspect);
    if (!inspect.ok) return inspect;
    const i = inspect.value.json as Partial<InspectResult> | null;
    if (inspect.value.status !== 200 || i === null || typeof i !== "object") {
      return err(failure(target, "/inspect", inspect.value));
    }
    if (i.processes !== 0 || i.workspaceEntries !== 0 || i.tmpEntries !== 0) {
      return err(
        new AppError(
          "sandbox_failed",
          `${target.pod} is not clean after reset: processes=${String(i.processes)} workspaceEntries=${String(i.workspaceEntries)} tmpEntries=${String(i.tmpEntries)}`,
        ),
      );
    }
    return ok({ killed: r.killed, removed: r.removed });
  }

  #call(target: ExecTarget, method: "GET" | "POST", path: string): Promise<Result<Answer>> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: Result<Answer>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!r.ok) req.destroy();
        resolve(r);
      };
      const req = request({
        host: target.podIP,
        port: this.#o.port,
        path,
        method,
        agent: this.#o.agent,
        headers: {
          authorization: `Bearer ${podExecToken(this.#o.poolToken, target.namespace, target.pod)}`,
          [FENCE_HEADER]: String(target.fence),
        },
      });
      const timer = setTimeout(
        () => settle(err(new AppError("sandbox_failed", `${method} ${path} on ${target.pod} timed out`))),
        this.#o.timeoutMs,
      );
      req.on("error", (e) =>
        settle(
          err(new AppError("sandbox_failed", `${method} ${path} on ${target.pod} failed: ${e.message}`)),
        ),
      );
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          let json: unknown = null;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          } catch {
            // left null: reported as a failure by the caller
          }
          settle(ok({ status: res.statusCode ?? 0, json }));
        });
        res.on("error", (e) =>
          settle(
            err(new AppError("sandbox_failed", `${method} ${path} on ${target.pod} broke: ${e.message}`)),
          ),
        );
      });
      req.end();
    });
  }
}

function failure(target: ExecTarget, path: string, a: Answer): AppError {
  const e = (a.json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (a.status === 409 && e?.code === "stale_lease") return new AppError("stale_lease", String(e.message));
  const detail = e ? `${String(e.code)}: ${String(e.message)}` : JSON.stringify(a.json);
  return new AppError("sandbox_failed", `${path} on ${target.pod} answered ${a.status} ${detail}`);
}
