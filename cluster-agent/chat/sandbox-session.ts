import type { ChatEvent, ExecOutcome } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import {
  LeasedSandbox,
  type LeasedSandboxContext,
  type LeasedSandboxDeps,
} from "../requests/leased-sandbox.ts";

/**
 * The one sandbox of one chat request: leased at the first command, kept for every later command
 * (so files written by one call are there for the next), released once when the request ends.
 * Commands go through the same leased-sandbox pipeline as `/v1/exec` (same events, same codes).
 */
export class SandboxSession {
  private sandbox: LeasedSandbox | undefined;
  private released = false;

  constructor(
    private readonly deps: LeasedSandboxDeps,
    /** Tenant, request id, and the request's signal (the client went away). */
    private readonly ctx: LeasedSandboxContext,
    private readonly emit: (e: ChatEvent) => void,
    /** Every command's and process's env (the egress proxy's variables in request mode). */
    readonly env?: Readonly<Record<string, string>>,
  ) {}

  get pod(): string | undefined {
    return this.sandbox?.pod;
  }

  /** Runs one command on the request's pod, taking the lease first if this is the first command. */
  async run(command: string, timeoutMs: number): Promise<Result<ExecOutcome>> {
    const leased = await this.ensureLease();
    if (!leased.ok) return leased;
    return leased.value.run({ command, timeoutMs, ...(this.env ? { env: { ...this.env } } : {}) });
  }

  /**
   * Idempotent. Emits sandbox.released only if a pod was ever held. Does not wait for the recycle
   * (the reply goes out first; the pod stays held until it is recycled): see `recycled`.
   */
  async release(): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox || this.released) return;
    this.released = true;
    void sandbox.release();
    this.emit({ type: "sandbox.released", pod: sandbox.pod });
  }

  /** Settles when the request's pod is recycled (at once if it never held one). */
  get recycled(): Promise<void> {
    return this.sandbox?.recycled ?? Promise.resolve();
  }

  /** The request's lease, taken on first use (emits sandbox.waiting, then sandbox.acquired). */
  async ensureLease(): Promise<Result<LeasedSandbox>> {
    if (this.released)
      return err(new AppError("internal", "the sandbox of this request was already released"));
    if (this.sandbox) return ok(this.sandbox);
    this.emit({ type: "sandbox.waiting" });
    const taken = await LeasedSandbox.take(this.deps, this.ctx);
    if (!taken.ok) return taken;
    this.sandbox = taken.value;
    if (this.ctx.signal.aborted) {
      // Won a pod just as the client left: give it back now rather than at the end of the request.
      await this.release();
      return err(new AppError("request_cancelled", "the chat request was aborted"));
    }
    const sandboxId = taken.value.lease.sandboxId;
    this.emit({ type: "sandbox.acquired", pod: taken.value.pod, ...(sandboxId ? { sandboxId } : {}) });
    return taken;
  }
}
