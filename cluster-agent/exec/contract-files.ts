import { randomBytes } from "node:crypto";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { FILES_DEFAULTS, type FilesRun, ShellFiles } from "./api-files.ts";
import { CONTRACT_MAX_STDIN_BYTES, runOnContract } from "./contract-exec.ts";
import type { ExecServerAccess, ExecServerClient } from "./exec-server-client.ts";
import { execServerClient } from "./exec-server-client.ts";
import type { ExecTarget } from "./executor.ts";

export type ContractFilesOptions = ExecServerAccess & {
  /** For each command the operation runs. */
  timeoutMs?: number;
  /** Largest read kept in memory (the server's own output cap may stop a read well before). */
  maxReadBytes?: number;
};

/** Appends its stdin to the staging file `$1`. */
const STAGE_SCRIPT = 'cat >> "$1"';
/** Runs the program after `$1` with the staging file `$1` as its stdin, then removes the file. */
const STAGED_SCRIPT = 'f=$1; shift; "$@" < "$f"; s=$?; rm -f -- "$f"; exit "$s"';
const UNSTAGE_SCRIPT = 'rm -f -- "$1"';

/**
 * The files contract through a pydantic-http server's `/exec` (EXEC_MODE=pydantic-http): the api
 * mode's programs (api-files.ts), each run as one contract command (contract-exec.ts: bytes in
 * and out as base64, so binary-safe). The contract's limits are the price: a write larger than
 * one command can carry is sent in pieces to a staging file in the pod's /tmp first, and a read
 * must fit the server's output cap (3/4 of it, as base64) — a larger one is `payload_too_large`.
 */
export class ContractFiles extends ShellFiles {
  readonly #client: ExecServerClient;
  readonly #timeoutMs: number;
  protected readonly maxReadBytes: number;

  constructor(o: ContractFilesOptions) {
    super();
    this.#client = execServerClient({ contract: "pydantic-http", ...o });
    this.#timeoutMs = o.timeoutMs ?? FILES_DEFAULTS.timeoutMs;
    this.maxReadBytes = o.maxReadBytes ?? FILES_DEFAULTS.maxReadBytes;
  }

  protected async run(
    target: ExecTarget,
    argv: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
    stdoutTo?: (chunk: Buffer) => void,
  ): Promise<Result<FilesRun>> {
    const r = await this.#run(target, argv, signal, stdin);
    // The contract answers a command's output whole (bounded by the server's output cap).
    if (!r.ok || !stdoutTo) return r;
    stdoutTo(r.value.stdout);
    return ok({ ...r.value, stdout: Buffer.alloc(0) });
  }

  async #run(
    target: ExecTarget,
    argv: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
  ): Promise<Result<FilesRun>> {
    if (stdin === undefined || stdin.byteLength <= CONTRACT_MAX_STDIN_BYTES)
      return this.#once(target, argv, signal, stdin);
    const staged = `/tmp/.pi-upload-${randomBytes(8).toString("hex")}`;
    for (let at = 0; at < stdin.byteLength; at += CONTRACT_MAX_STDIN_BYTES) {
      const piece = stdin.subarray(at, at + CONTRACT_MAX_STDIN_BYTES);
      const r = await this.#once(target, ["/bin/sh", "-c", STAGE_SCRIPT, "pi-stage", staged], signal, piece);
      if (!r.ok || r.value.code !== 0) {
        await this.#once(
          target,
          ["/bin/sh", "-c", UNSTAGE_SCRIPT, "pi-stage", staged],
          AbortSignal.timeout(10_000),
        );
        if (!r.ok) return r;
        return err(
          new AppError(
            "sandbox_failed",
            `staging the upload in /tmp failed: ${r.value.stderr.slice(0, 200)}`,
          ),
        );
      }
    }
    return this.#once(target, ["/bin/sh", "-c", STAGED_SCRIPT, "pi-staged", staged, ...argv], signal);
  }

  async #once(
    target: ExecTarget,
    argv: string[],
    signal: AbortSignal,
    stdin?: Uint8Array,
  ): Promise<Result<FilesRun>> {
    const r = await runOnContract(this.#client, target, argv, {
      timeoutMs: this.#timeoutMs,
      signal,
      ...(stdin ? { stdin } : {}),
      // "F\n" or "D\n" before the data.
      maxBytes: this.maxReadBytes + 2,
    });
    if (!r.ok) return r;
    const { exitCode, output, truncated } = r.value;
    if (truncated)
      return err(
        new AppError(
          "payload_too_large",
          `the answer is larger than the sandbox's exec server returns at once, or than ${this.maxReadBytes} bytes`,
        ),
      );
    // The contract has one output: a program's data on success, its message on failure.
    const buf = Buffer.from(output);
    return ok(
      exitCode === 0
        ? { code: 0, stdout: buf, stderr: "" }
        : { code: exitCode ?? -1, stdout: Buffer.alloc(0), stderr: buf.toString("utf8").trim() },
    );
  }
}
