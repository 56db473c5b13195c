import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { EXEC_SERVER_PATHS, type InspectResult, type ResetResult } from "../sandbox-server/protocol.ts";
import {
  type ExecServerAccess,
  type ExecServerClient,
  execServerClient,
  readAnswer,
} from "./exec-server-client.ts";
import type { ExecTarget, Scrubber } from "./executor.ts";

export type HttpScrubberOptions = ExecServerAccess & {
  /** Per request; /reset of a fork bomb may take a few seconds. */
  timeoutMs?: number;
};

/** `scrub` recycling: /reset, then /inspect proves the pod is clean before it is handed out again. */
export class HttpScrubber implements Scrubber {
  readonly #client: ExecServerClient;
  readonly #timeoutMs: number;

  constructor(opts: HttpScrubberOptions) {
    this.#client = execServerClient(opts);
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
  }

  async scrub(target: ExecTarget): Promise<Result<{ killed: number; removed: number }>> {
    const reset = await this.#call(target, "POST", EXEC_SERVER_PATHS.reset);
    if (!reset.ok) return reset;
    // Checked field by field below: a broken or foreign server must not pass for a clean one.
    const r = reset.value as Partial<ResetResult> | null | undefined;
    if (typeof r?.killed !== "number" || typeof r.removed !== "number") {
      return err(malformed(target, "/reset", reset.value));
    }
    const inspect = await this.#call(target, "GET", EXEC_SERVER_PATHS.inspect);
    if (!inspect.ok) return inspect;
    const i = inspect.value as Partial<InspectResult> | null | undefined;
    if (i === null || typeof i !== "object") return err(malformed(target, "/inspect", inspect.value));
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

  /** One JSON answer of the exec server; a non-200 answer goes through the one error map. */
  async #call(target: ExecTarget, method: "GET" | "POST", path: string): Promise<Result<unknown>> {
    const r = await this.#client.call(target, { method, path, headTimeoutMs: this.#timeoutMs });
    if (!r.ok) return r;
    return readAnswer(r.value, this.#timeoutMs);
  }
}

/** A 200 answer without the fields it must have: a broken or foreign server, not a clean pod. */
function malformed(target: ExecTarget, path: string, json: unknown): AppError {
  return new AppError("sandbox_failed", `${path} on ${target.pod} answered ${JSON.stringify(json)}`);
}
