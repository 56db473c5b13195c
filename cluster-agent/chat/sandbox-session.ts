import type { ChatEvent, ExecOutcome } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { AcquireLease, ChatExecutor, ChatLease } from "./sandbox-ports.ts";

/**
 * The one sandbox of one chat request: leased at the first command, kept for every later command
 * (so files written by one call are there for the next), released once when the request ends.
 */
export class SandboxSession {
  private lease: ChatLease | undefined;
  private released = false;

  constructor(
    private readonly acquire: AcquireLease,
    private readonly executor: ChatExecutor,
    private readonly emit: (e: ChatEvent) => void,
    /** The request's signal: the client went away. */
    private readonly signal: AbortSignal,
  ) {}

  get pod(): string | undefined {
    return this.lease?.pod;
  }

  /** Runs one command on the request's pod, taking the lease first if this is the first command. */
  async run(command: string, timeoutMs: number): Promise<Result<ExecOutcome>> {
    const leased = await this.ensureLease();
    if (!leased.ok) return leased;
    const lease = leased.value;
    if (lease.lost.aborted) return err(leaseLost(lease));
    const result = await this.executor.exec(
      { namespace: lease.namespace, pod: lease.pod, podIP: lease.podIP, fence: lease.fence },
      { command, timeoutMs, signal: AbortSignal.any([this.signal, lease.lost]) },
    );
    if (this.signal.aborted) return result;
    // A renewal failure kills the command; a higher fence seen by the pod means the same thing.
    if (lease.lost.aborted || (!result.ok && result.error.code === "stale_lease"))
      return err(leaseLost(lease));
    return result;
  }

  /** Idempotent. Emits sandbox.released only if a pod was ever held. */
  async release(): Promise<void> {
    const lease = this.lease;
    if (!lease || this.released) return;
    this.released = true;
    // The contract says release never throws; a broken one must still not turn a reply into a crash.
    await lease.release().catch(() => undefined);
    this.emit({ type: "sandbox.released", pod: lease.pod });
  }

  /** The request's lease, taken on first use (emits sandbox.waiting, then sandbox.acquired). */
  async ensureLease(): Promise<Result<ChatLease>> {
    if (this.released)
      return err(new AppError("internal", "the sandbox of this request was already released"));
    if (this.lease) return ok(this.lease);
    this.emit({ type: "sandbox.waiting" });
    const acquired = await this.acquire(this.signal);
    if (!acquired.ok) return acquired;
    this.lease = acquired.value;
    if (this.signal.aborted) {
      // Won a pod just as the client left: give it back now rather than at the end of the request.
      await this.release();
      return err(new AppError("request_cancelled", "the chat request was aborted"));
    }
    this.emit({ type: "sandbox.acquired", pod: acquired.value.pod });
    return acquired;
  }
}

function leaseLost(lease: ChatLease): AppError {
  return new AppError(
    "lease_lost",
    `the lease on sandbox ${lease.pod} was lost (renewal failed or it was taken over); the command was stopped`,
  );
}
