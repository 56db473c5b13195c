import { randomBytes } from "node:crypto";
import { z } from "zod";
import { type ExecOutcome, LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import {
  type ExecServerAccess,
  type ExecServerClient,
  execServerClient,
  readAnswer,
} from "./exec-server-client.ts";
import { abortError, type ExecCall, type ExecTarget, type Executor, RESULT_GRACE_MS } from "./executor.ts";
import { OutputCapture } from "./output-capture.ts";
import { checkedWrapperArgv, killArgv, wrapperOutcome } from "./remote-wrapper.ts";

/**
 * `pydantic-http` mode: the pods run an exec server the user chose, written to pydantic-ai-backends'
 * http contract (its KubernetesPodSandbox, mode="http"): `GET /health` → `{"ready": true}`,
 * `POST /exec {command, timeout_seconds}` with `X-Sandbox-Token` → `{output, exit_code, truncated}`,
 * stdout and stderr combined. That is all the contract has, so everything else travels inside the
 * command: the api mode's wrapper (remote-wrapper.ts: our timeout killing the whole group, cwd,
 * a clean env, leftovers killed) runs as the command, stdin is piped in as base64, and the combined
 * output comes back as base64 so that every byte survives the server's JSON text (the server's
 * UTF-8 decoding would turn binary into U+FFFD). The cost: the server's output cap holds 3/4 as
 * many bytes. The contract has no fencing (the lease alone guards the pod, as in api mode), no
 * stream (output arrives whole, at the end) and no separate stderr.
 */

export const CONTRACT_PATHS = { health: "/health", exec: "/exec" } as const;

const ContractAnswerSchema = z.object({
  output: z.string(),
  exit_code: z.number().int().nullable(),
  truncated: z.boolean().optional(),
});

/**
 * The command text carries everything (Linux refuses one argument over 128 KiB, and the server
 * passes the command as one): stdin above this is refused rather than sent as an E2BIG.
 */
export const CONTRACT_MAX_STDIN_BYTES = 64 * 1024;

/** One shell word, whatever the bytes: single quotes, and `'\''` for a quote inside. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The command the contract server runs: `argv` with `stdin` piped in, its stdout and stderr
 * (together, as the contract has them) base64-encoded, and its exit status the shell's own.
 * POSIX sh has no pipefail: the status leaves the pipeline on fd 4 into `$(…)`, base64 writes to
 * the real stdout kept on fd 3; the command gets neither. At most `maxBytes` + 1 bytes come back
 * (whatever cap the server has): the rest is read and dropped in the pod, so the command is never
 * cut short by a closed pipe.
 */
export function framedCommand(argv: readonly string[], maxBytes: number, stdin?: Uint8Array): string {
  const cmd = argv.map(shellQuote).join(" ");
  const input =
    stdin === undefined
      ? ""
      : `printf '%s' ${shellQuote(Buffer.from(stdin).toString("base64"))} | base64 -d | `;
  const keep = `{ head -c ${base64Chars(maxBytes + 1)}; cat >/dev/null; }`;
  return [
    "exec 3>&1",
    `c=$( { { ${input}${cmd} 2>&1 3>&- 4>&-; echo "$?" >&4; } | base64 | tr -d '\\n' | ${keep} >&3 3>&- 4>&-; } 4>&1 )`,
    'exit "$c"',
  ].join("\n");
}

/** Characters of base64 that carry at least `bytes` bytes. */
const base64Chars = (bytes: number) => Math.ceil(bytes / 3) * 4;

export interface ContractRun {
  exitCode: number | null;
  /** The command's output (stdout and stderr combined), exactly: at most `maxBytes`, and what the server kept. */
  output: Uint8Array;
  /** The command wrote more than `maxBytes`, or than the server kept. */
  truncated: boolean;
  durationMs: number;
}

/** Base64 text the server may have cut anywhere: the whole quads, decoded; whitespace ignored. */
function decodeCut(text: string): Uint8Array {
  const clean = text.replace(/[^A-Za-z0-9+/=]/g, "");
  return Buffer.from(clean.slice(0, clean.length - (clean.length % 4)), "base64");
}

/**
 * One `POST /exec` on the contract server through the one exec-server client: `argv` framed as
 * above, the answer checked (a body that is not the contract's is `sandbox_failed` saying what was
 * wrong; a refused token is the server's 401, `sandbox_failed` too), waited for at most `timeoutMs`
 * plus the grace.
 */
export async function runOnContract(
  client: ExecServerClient,
  target: ExecTarget,
  argv: readonly string[],
  o: { timeoutMs: number; signal: AbortSignal; stdin?: Uint8Array; maxBytes: number },
): Promise<Result<ContractRun>> {
  const started = performance.now();
  // The server's own timeout comes after ours (the wrapper's), so ours is the one that fires.
  const body = JSON.stringify({
    command: framedCommand(argv, o.maxBytes, o.stdin),
    timeout_seconds: Math.ceil(o.timeoutMs / 1000) + 5,
  });
  const waitMs = o.timeoutMs + RESULT_GRACE_MS;
  const res = await client.call(target, {
    method: "POST",
    path: CONTRACT_PATHS.exec,
    headers: { "content-type": "application/json" },
    body,
    signal: o.signal,
    headTimeoutMs: waitMs,
  });
  if (!res.ok) return res;
  // base64 needs no JSON escapes: the output's characters plus the envelope.
  const answer = await readAnswer(res.value, waitMs, base64Chars(o.maxBytes + 1) + 64 * 1024);
  if (!answer.ok) return answer;
  const parsed = ContractAnswerSchema.safeParse(answer.value);
  if (!parsed.success) {
    const what =
      answer.value === undefined
        ? "is not JSON"
        : `is not {output, exit_code, truncated}: ${parsed.error.message}`;
    return err(new AppError("sandbox_failed", `the exec server's answer on ${target.pod} ${what}`));
  }
  const output = decodeCut(parsed.data.output);
  return ok({
    exitCode: parsed.data.exit_code,
    output: output.subarray(0, o.maxBytes),
    truncated: (parsed.data.truncated ?? false) || output.byteLength > o.maxBytes,
    durationMs: Math.round((performance.now() - started) * 1000) / 1000,
  });
}

export type ContractExecutorOptions = ExecServerAccess & { outputCapBytes?: number };

export class ContractExecutor implements Executor {
  readonly mode = "pydantic-http" as const;
  readonly #client: ExecServerClient;
  readonly #cap: number;

  constructor(o: ContractExecutorOptions) {
    this.#client = execServerClient({ contract: "pydantic-http", ...o });
    this.#cap = o.outputCapBytes ?? LIMITS.outputCapBytes;
  }

  warm(podIP: string): void {
    this.#client.warm(podIP);
  }

  async exec(target: ExecTarget, call: ExecCall): Promise<Result<ExecOutcome>> {
    if (call.signal.aborted) return err(abortError(call.signal));
    const stdin = call.stdin === undefined ? undefined : Buffer.from(call.stdin);
    if (stdin && stdin.byteLength > CONTRACT_MAX_STDIN_BYTES)
      return err(
        new AppError(
          "invalid_request",
          `stdin: at most ${CONTRACT_MAX_STDIN_BYTES} bytes with EXEC_MODE=pydantic-http (it travels inside the command)`,
        ),
      );
    const id = randomBytes(8).toString("hex");
    const argv = checkedWrapperArgv(call, id);
    if (!argv.ok) return argv;
    const run = await runOnContract(this.#client, target, argv.value, {
      timeoutMs: call.timeoutMs,
      signal: call.signal,
      ...(stdin ? { stdin } : {}),
      maxBytes: this.#cap,
    });
    if (!run.ok) {
      // The server may keep running what it was asked to (the contract says nothing of a
      // disconnect): kill the group the wrapper recorded, as api mode does.
      await this.#killRemote(target, id);
      return run;
    }
    const capture = new OutputCapture(this.#cap);
    const kept = capture.push("stdout", run.value.output);
    if (kept.byteLength > 0) call.onOutput?.("stdout", kept);
    // stdoutBytes counts what came back: the contract does not say how much more there was.
    const out = capture.finish(
      { stdoutBytes: run.value.output.byteLength, stderrBytes: 0, truncated: run.value.truncated },
      call.outputEncoding,
    );
    const refusal =
      call.outputEncoding === "base64" ? Buffer.from(out.stdout, "base64").toString() : out.stdout;
    return wrapperOutcome(run.value.exitCode, out, refusal, run.value.durationMs, call.timeoutMs);
  }

  /** Best effort, bounded: a second command that SIGKILLs the group the wrapper recorded. */
  async #killRemote(target: ExecTarget, id: string): Promise<void> {
    await runOnContract(this.#client, target, killArgv(id), {
      timeoutMs: 5_000,
      signal: AbortSignal.timeout(5_000 + RESULT_GRACE_MS),
      maxBytes: 1024,
    });
  }
}
