import { LIMITS } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./model-retry.ts";

/** Tunables of the chat loop; every one has a default, tests shrink the timings. */
export interface ChatOptions {
  /** Assistant turns whose tool calls are executed, at most, per request. */
  maxToolRounds: number;
  /** Stream the model's answer (assistant.delta events); off for servers that cannot stream tool calls. */
  stream: boolean;
  /** Longest silence from the model server before an attempt counts as failed. */
  modelIdleTimeoutMs: number;
  retry: RetryPolicy;
  /** Per stream, what the model sees of a command's output: this much of its start and of its end. */
  toolOutputHeadBytes: number;
  toolOutputTailBytes: number;
  defaultCommandTimeoutSeconds: number;
  maxCommandTimeoutSeconds: number;
}

export const DEFAULT_CHAT_OPTIONS: ChatOptions = {
  maxToolRounds: 8,
  stream: true,
  modelIdleTimeoutMs: 120_000,
  retry: DEFAULT_RETRY_POLICY,
  toolOutputHeadBytes: 4_096,
  toolOutputTailBytes: 4_096,
  defaultCommandTimeoutSeconds: LIMITS.defaultTimeoutSeconds,
  maxCommandTimeoutSeconds: LIMITS.maxTimeoutSeconds,
};

export type ChatOptionsInput = Partial<Omit<ChatOptions, "retry">> & { retry?: Partial<RetryPolicy> };

export function resolveChatOptions(input: ChatOptionsInput = {}): ChatOptions {
  return { ...DEFAULT_CHAT_OPTIONS, ...input, retry: { ...DEFAULT_CHAT_OPTIONS.retry, ...input.retry } };
}

/** CHAT_MAX_TOOL_ROUNDS (default 8) and CHAT_STREAM (default true), for the agent configuration. */
export function readChatOptions(
  env: Record<string, string | undefined> = process.env,
): Result<ChatOptionsInput> {
  const out: ChatOptionsInput = {};
  const rounds = env.CHAT_MAX_TOOL_ROUNDS?.trim();
  if (rounds) {
    const n = Number(rounds);
    if (!Number.isInteger(n) || n < 0 || n > 100) {
      return err(new AppError("invalid_request", "CHAT_MAX_TOOL_ROUNDS must be an integer from 0 to 100"));
    }
    out.maxToolRounds = n;
  }
  const stream = env.CHAT_STREAM?.trim().toLowerCase();
  if (stream) {
    if (stream !== "true" && stream !== "false") {
      return err(new AppError("invalid_request", "CHAT_STREAM must be true or false"));
    }
    out.stream = stream === "true";
  }
  return ok(out);
}
