import type { AppError } from "../../shared/errors.ts";
import type { ExecTarget } from "../exec/executor.ts";
import type { AcquiredSandbox } from "./leased-sandbox.ts";

/** What a use of a sandbox (sandboxes/service.ts `SandboxService.use`) gives its caller. */
export interface SandboxUse {
  target: ExecTarget;
  sandboxId: string;
  /** The sandbox's default env (applies under a command's own). */
  env: Record<string, string> | undefined;
  /**
   * Aborts when the sandbox goes away while the use runs (deleted, expired, its keep-alive failed),
   * with an AppError saying which; the pipeline returns that reason.
   */
  signal: AbortSignal;
  /** Why the sandbox's pod failed, if it did (see SandboxLease.ended). */
  ended?(waitMs: number): Promise<AppError | undefined>;
}

/**
 * The one adapter from a sandbox to the pipeline's lease: a use of the sandbox stands in for a
 * fresh lease. `release` ends what the caller holds (nothing by default: the sandbox keeps its pod).
 */
export function leaseOfSandbox(
  use: SandboxUse,
  release: () => Promise<void> = async () => {},
): AcquiredSandbox {
  return {
    ...use.target,
    lost: use.signal,
    queueMs: 0,
    sandboxId: use.sandboxId,
    release,
    ...(use.ended ? { ended: use.ended } : {}),
  };
}
