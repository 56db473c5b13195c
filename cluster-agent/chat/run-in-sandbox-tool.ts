import type { ChatCompletionFunctionTool } from "openai/resources/chat/completions";
import { z } from "zod";
import { LIMITS } from "../../shared/api.ts";
import { type NetworkView, NO_NETWORK, networkSentence } from "../../shared/tools/network-tool.ts";

export const RUN_IN_SANDBOX = "run_in_sandbox";

/** The one tool the model is offered (JSON Schema as the Chat Completions API expects it). */
export function runInSandboxTool(
  maxTimeoutSeconds: number,
  network: NetworkView = NO_NETWORK,
): ChatCompletionFunctionTool {
  return {
    type: "function",
    function: {
      name: RUN_IN_SANDBOX,
      description:
        "Run a shell command (/bin/sh -c) in the isolated sandbox and get its exit code, stdout and stderr. " +
        "The working directory is /workspace; files persist across calls within this request. " +
        networkSentence(network),
      parameters: {
        type: "object",
        properties: {
          command: { type: "string", description: "The shell command to run." },
          timeout_seconds: {
            type: "integer",
            minimum: 1,
            maximum: maxTimeoutSeconds,
            description: "Kill the command after this many seconds (optional).",
          },
        },
        required: ["command"],
        additionalProperties: false,
      },
    },
  };
}

export interface RunInSandboxArgs {
  command: string;
  timeoutSeconds: number;
}

const utf8Bytes = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * Parses the model's arguments. A failure is a sentence for the model (sent back as the tool's
 * answer so it can correct itself), never an exception: models do emit broken JSON.
 */
export function parseRunInSandboxArgs(
  raw: string,
  limits: { defaultTimeoutSeconds: number; maxTimeoutSeconds: number },
): { ok: true; value: RunInSandboxArgs } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw === "" ? "{}" : raw);
  } catch (e) {
    return { ok: false, error: `the arguments are not valid JSON (${(e as Error).message})` };
  }
  // Unknown extra keys are ignored: some models add harmless fields, and refusing them helps nobody.
  const schema = z.object({
    command: z
      .string({ error: (i) => (i.input === undefined ? "command is required" : "command must be a string") })
      .refine((c) => c.trim() !== "", "command must not be empty")
      .refine(
        (c) => utf8Bytes(c) <= LIMITS.commandBytes,
        `command is longer than ${LIMITS.commandBytes} bytes`,
      ),
    timeout_seconds: z
      .number({ error: "timeout_seconds must be a number" })
      .int("timeout_seconds must be an integer")
      .min(1, "timeout_seconds must be at least 1")
      .max(limits.maxTimeoutSeconds, `timeout_seconds must be at most ${limits.maxTimeoutSeconds}`)
      .nullish(),
  });
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    return { ok: false, error: parsed.error.issues.map((i) => i.message).join("; ") };
  }
  return {
    ok: true,
    value: {
      command: parsed.data.command,
      timeoutSeconds: parsed.data.timeout_seconds ?? limits.defaultTimeoutSeconds,
    },
  };
}

/** The tool message for a call that could not be run; it repeats the expected shape. */
export function toolArgumentError(why: string, maxTimeoutSeconds: number): string {
  return (
    `error: invalid arguments for ${RUN_IN_SANDBOX}: ${why}. Nothing was run. ` +
    `Expected JSON like {"command": "ls -la", "timeout_seconds": 30} (timeout_seconds optional, 1-${maxTimeoutSeconds}).`
  );
}
