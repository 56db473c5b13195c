import { APIUserAbortError, type OpenAI } from "openai";
import type {
  ChatCompletionChunk,
  ChatCompletionFunctionTool,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import { ModelIdleTimeout } from "./model-retry.ts";

/** One tool call as the model asked for it; `arguments` is the raw string (possibly not JSON). */
export interface RequestedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** What one assistant turn amounts to, whether it arrived streamed or in one piece. */
export interface AssistantTurn {
  text: string;
  toolCalls: RequestedToolCall[];
  finishReason: string | null;
}

export interface TurnParams {
  model: string;
  messages: ChatCompletionMessageParam[];
  tools: ChatCompletionFunctionTool[];
  stream: boolean;
  /** Longest silence allowed from the server: before the first byte and between stream chunks. */
  idleTimeoutMs: number;
  /** Used to name tool calls a server sent without an id (some compatible servers do). */
  fallbackIdPrefix: string;
}

/**
 * Asks the model for its next turn. Content deltas go to `onDelta` as they arrive. Throws what the
 * openai client throws, or ModelIdleTimeout; model-retry.ts decides what that means.
 */
export async function requestAssistantTurn(
  client: OpenAI,
  p: TurnParams,
  onDelta: (text: string) => void,
  signal: AbortSignal,
): Promise<AssistantTurn> {
  const idle = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new ModelIdleTimeout(p.idleTimeoutMs)), p.idleTimeoutMs);
  };
  const combined = AbortSignal.any([signal, idle.signal]);
  touch();
  try {
    const base = { model: p.model, messages: p.messages, tools: p.tools, tool_choice: "auto" as const };
    if (!p.stream) {
      const completion = await client.chat.completions.create(
        { ...base, stream: false },
        { signal: combined },
      );
      const choice = completion.choices[0];
      const text = choice?.message.content ?? "";
      if (text !== "") onDelta(text);
      const toolCalls = (choice?.message.tool_calls ?? []).flatMap((c, i) =>
        c.type === "function"
          ? [
              {
                id: c.id || `${p.fallbackIdPrefix}${i}`,
                name: c.function.name,
                arguments: c.function.arguments ?? "",
              },
            ]
          : [],
      );
      return { text, toolCalls, finishReason: choice?.finish_reason ?? null };
    }
    const stream = await client.chat.completions.create({ ...base, stream: true }, { signal: combined });
    const acc = new ToolCallAccumulator(p.fallbackIdPrefix);
    let text = "";
    let finishReason: string | null = null;
    try {
      for await (const chunk of stream) {
        touch();
        const choice = chunk.choices[0];
        if (!choice) continue;
        const delta = choice.delta;
        if (delta.content) {
          text += delta.content;
          onDelta(delta.content);
        }
        for (const tc of delta.tool_calls ?? []) acc.add(tc);
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    } catch (e) {
      // An idle abort surfaces as the client's abort error; report the real reason.
      if (idle.signal.aborted && !signal.aborted) throw idle.signal.reason;
      throw e;
    }
    // The openai stream ends quietly (no exception) when its signal aborts: a cut-off turn must not pass for a whole one.
    if (signal.aborted) throw new APIUserAbortError();
    if (idle.signal.aborted) throw idle.signal.reason;
    return { text, toolCalls: acc.calls(), finishReason };
  } catch (e) {
    if (idle.signal.aborted && !signal.aborted) throw idle.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

type ToolCallDelta = NonNullable<ChatCompletionChunk.Choice.Delta["tool_calls"]>[number];

/** Streams send each tool call as fragments keyed by `index`: the id and name first, then pieces of the arguments. */
class ToolCallAccumulator {
  private readonly byIndex = new Map<number, RequestedToolCall>();
  constructor(private readonly fallbackIdPrefix: string) {}

  add(d: ToolCallDelta): void {
    const index = typeof d.index === "number" ? d.index : this.byIndex.size;
    let call = this.byIndex.get(index);
    if (!call) {
      call = { id: "", name: "", arguments: "" };
      this.byIndex.set(index, call);
    }
    if (d.id) call.id = d.id;
    // OpenAI sends the name once; some compatible servers repeat it in every fragment.
    if (d.function?.name && call.name === "") call.name = d.function.name;
    if (d.function?.arguments) call.arguments += d.function.arguments;
  }

  calls(): RequestedToolCall[] {
    return [...this.byIndex.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => ({ ...c, id: c.id || `${this.fallbackIdPrefix}${index}` }));
  }
}
