import type { ExecOutcome } from "../api.ts";
import { truncateForModel } from "./truncate.ts";

/** The tool message the model reads for one command, each stream shortened by `truncateForModel`. */
export function toolResultText(
  outcome: ExecOutcome,
  opts: { headBytes: number; tailBytes: number; timeoutSeconds: number },
): { text: string; truncated: boolean } {
  const stdout = truncateForModel(outcome.stdout, { totalBytes: outcome.stdoutBytes, ...opts });
  const stderr = truncateForModel(outcome.stderr, { totalBytes: outcome.stderrBytes, ...opts });
  const lines: string[] = [];
  if (outcome.exitCode !== null) lines.push(`exit_code: ${outcome.exitCode}`);
  else lines.push(`exit_code: none (killed${outcome.signal ? ` by ${outcome.signal}` : ""})`);
  if (outcome.timedOut) lines.push(`timed_out: true (the command was killed after ${opts.timeoutSeconds} s)`);
  lines.push(`duration_ms: ${Math.round(outcome.durationMs)}`);
  lines.push(
    outcome.stdout === "" && outcome.stdoutBytes === 0 ? "stdout: (empty)" : `stdout:\n${stdout.text}`,
  );
  lines.push(
    outcome.stderr === "" && outcome.stderrBytes === 0 ? "stderr: (empty)" : `stderr:\n${stderr.text}`,
  );
  return { text: lines.join("\n"), truncated: outcome.truncated || stdout.truncated || stderr.truncated };
}
