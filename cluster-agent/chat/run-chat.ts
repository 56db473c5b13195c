import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import {
  type ChatEvent,
  type ChatResponse,
  MODEL_CALLS_HEADER,
  PORT_LINK_LIMITS,
  type PortLinkCreateRequest,
  type PortLinkRecord,
  type RelayChatRequest,
  type ToolCallRecord,
} from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { parseToolArgs } from "../../shared/tools/definitions.ts";
import { toolResultText } from "../../shared/tools/exec-text.ts";
import { getNetwork, type NetworkView, NO_NETWORK } from "../../shared/tools/network-tool.ts";
import { chatPortLinkAnswer, openPortLink } from "../../shared/tools/port-link-tools.ts";
import { PROCESS_TOOL_NAMES } from "../../shared/tools/process-tools.ts";
import { MODEL_FIXABLE_CODES } from "../../shared/tools/run-tool.ts";
import { abortError, type SandboxFiles, type SandboxProcesses } from "../exec/executor.ts";
import type { LeasedSandboxDeps } from "../requests/leased-sandbox.ts";
import { type ChatOptions, type ChatOptionsInput, resolveChatOptions } from "./chat-options.ts";
import { chatToolSpecs, FILE_TOOL_NAMES, runFileTool } from "./chat-tools.ts";
import type { ModelConfig } from "./model-config.ts";
import { withModelRetry } from "./model-retry.ts";
import { type AssistantTurn, type RequestedToolCall, requestAssistantTurn } from "./model-turn.ts";
import { parseRunInSandboxArgs, RUN_IN_SANDBOX, toolArgumentError } from "./run-in-sandbox-tool.ts";
import { SandboxSession } from "./sandbox-session.ts";
import { systemPrompt } from "./system-prompt.ts";

/** A pino logger fits this shape. */
export interface ChatLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The agent's port links (sandboxes/port-links.ts PortLinks fits): what POST …/ports/:port/links runs. */
export interface ChatPortLinks {
  create(
    tenant: string,
    sandboxId: string,
    requestId: string,
    port: number,
    req: PortLinkCreateRequest,
  ): Promise<Result<PortLinkRecord>>;
}

export interface ChatDeps {
  tenant: string;
  requestId: string;
  /** From readModelConfig(); check it before calling, so an unconfigured model never costs a lease. */
  model: ModelConfig;
  /** Takes the request's lease (tenant and request id bound by the caller). */
  acquire: LeasedSandboxDeps["acquire"];
  executor: LeasedSandboxDeps["executor"];
  /** The agent's event bus: every command of a chat emits exec.started / exec.finished like /v1/exec. */
  bus: LeasedSandboxDeps["bus"];
  /** The agent's sandbox files: with them the model also gets read_file, write_file, edit_file, list_files. */
  files?: SandboxFiles;
  /**
   * Long-lived processes (http exec mode): with them the model also gets start_process,
   * read_process_output, write_process_stdin, stop_process, list_processes.
   */
  processes?: SandboxProcesses;
  options?: ChatOptionsInput;
  log?: ChatLog;
  /** Session mode: a note for the model before the user's message (e.g. its sandbox expired). */
  sessionNote?: string;
  /** Session mode: the session's sandbox id, reported in the response. */
  sandboxId?: () => string | undefined;
  /** Under every command's env (request mode: the egress proxy's variables). */
  env?: Readonly<Record<string, string>>;
  /**
   * What the sandbox may reach now (system prompt, run_in_sandbox's description, get_network).
   * Read at each use: in session mode the owner may change the policy during the turn.
   */
  network?: () => NetworkView;
  /**
   * Port links (http exec mode): with them and a session sandbox (`sandboxId`) the model also gets
   * open_port_link. Request mode never: its pod has no sandbox id for a link to name.
   */
  links?: ChatPortLinks;
}

/** Whether open_port_link is offered: only a session's sandbox can be linked. */
const offersPortLink = (deps: ChatDeps) => deps.links !== undefined && deps.sandboxId !== undefined;

/** Largest file write_file/edit_file may write from a chat (the model's text, not an upload). */
const CHAT_MAX_WRITE_BYTES = 8 * 1024 * 1024;

/**
 * One chat request: a fresh agent with its own model client, message list and sandbox session.
 * History in, events out. Ends with `done` or `error` as the last event, except when `signal`
 * aborts (client gone): then the model stream and the running command are stopped, the lease is
 * released and nothing more is emitted; the result is then the signal's reason if it is an
 * AppError (e.g. shutting_down), else `request_cancelled`.
 *
 * Parallel tool calls in one assistant turn run one after another, in the order given, on the
 * request's one pod: commands of one turn often depend on each other's files, and one pod runs
 * one command at a time, which keeps output and timing of each call its own.
 *
 * Max tool rounds: after `maxToolRounds` turns of executed tool calls, a turn that asks for more
 * is not executed; the reply is that turn's text (if any) followed by a fixed notice saying the
 * limit was reached. A fixed notice (rather than one more model call without tools) is always
 * accurate, costs no extra model call, and cannot fail.
 */
export async function runChat(
  request: RelayChatRequest,
  deps: ChatDeps,
  emit: (e: ChatEvent) => void,
  signal: AbortSignal,
): Promise<Result<ChatResponse>> {
  const opts = resolveChatOptions(deps.options);
  const out = (e: ChatEvent) => {
    if (signal.aborted) return;
    try {
      emit(e);
    } catch (cause) {
      deps.log?.warn({ requestId: deps.requestId, err: cause }, "chat event listener threw");
    }
  };
  const sandbox = new SandboxSession(
    {
      acquire: deps.acquire,
      executor: deps.executor,
      bus: deps.bus,
      ...(deps.files ? { files: deps.files } : {}),
      ...(deps.processes ? { processes: deps.processes } : {}),
      ...(deps.log ? { log: deps.log } : {}),
    },
    { tenant: deps.tenant, requestId: deps.requestId, signal },
    out,
    deps.env,
  );
  // Model calls made so far: a turn that fails after some is still charged for them (the edge
  // reads the count from the error event, or the JSON error's MODEL_CALLS_HEADER).
  const calls = { made: 0 };
  const failed = (error: AppError): Result<never> => {
    out({ type: "error", error: error.toBody(deps.requestId), modelCalls: calls.made });
    return err(withModelCalls(error, calls.made));
  };
  try {
    const result = await converse(request, deps, opts, sandbox, out, signal, calls);
    if (signal.aborted) {
      await sandbox.release();
      return err(abortError(signal));
    }
    if (!result.ok) {
      await sandbox.release();
      return failed(result.error);
    }
    const response: ChatResponse = {
      requestId: deps.requestId,
      sessionId: request.sessionId,
      reply: result.value.reply,
      toolCalls: result.value.toolCalls,
      modelCalls: result.value.modelCalls,
    };
    const sandboxId = deps.sandboxId?.();
    if (sandboxId !== undefined) response.sandboxId = sandboxId;
    // Order: assistant.message, sandbox.released, done — done is always the last event.
    out({ type: "assistant.message", text: response.reply });
    await sandbox.release();
    out({ type: "done", response });
    return ok(response);
  } catch (cause) {
    // A bug, not a branchable failure: still end the stream with an error event.
    await sandbox.release();
    if (signal.aborted) return err(abortError(signal));
    // Its text is for the log (below), not for the tenant.
    deps.log?.warn({ requestId: deps.requestId, err: cause }, "chat loop failed");
    return failed(new AppError("internal", "the chat loop failed", { cause }));
  } finally {
    await sandbox.release();
  }
}

async function converse(
  request: RelayChatRequest,
  deps: ChatDeps,
  opts: ChatOptions,
  sandbox: SandboxSession,
  out: (e: ChatEvent) => void,
  signal: AbortSignal,
  calls: { made: number },
): Promise<Result<{ reply: string; toolCalls: ToolCallRecord[]; modelCalls: number }>> {
  const client = new OpenAI({
    apiKey: deps.model.apiKey,
    baseURL: deps.model.baseURL,
    maxRetries: 0,
    timeout: opts.modelIdleTimeoutMs,
  });
  const messages: ChatCompletionMessageParam[] = [
    {
      role: "system",
      content: systemPrompt({
        defaultTimeoutSeconds: opts.defaultCommandTimeoutSeconds,
        maxTimeoutSeconds: opts.maxCommandTimeoutSeconds,
        outputBytes: opts.toolOutputHeadBytes + opts.toolOutputTailBytes,
        fileTools: deps.files !== undefined,
        processTools: deps.processes !== undefined,
        sessionSandbox: deps.sandboxId !== undefined,
        portLinks: offersPortLink(deps),
        network: deps.network?.() ?? NO_NETWORK,
      }),
    },
    ...request.history.map((m): ChatCompletionMessageParam => ({ role: m.role, content: m.content })),
    ...(deps.sessionNote ? [{ role: "system" as const, content: deps.sessionNote }] : []),
    { role: "user", content: request.message },
  ];
  const toolCalls: ToolCallRecord[] = [];

  for (let round = 0; ; round++) {
    calls.made = round + 1;
    const turn = await nextTurn(client, deps, opts, messages, round, out, signal);
    if (!turn.ok) return turn;
    const { text, toolCalls: requested } = turn.value;
    if (requested.length === 0) return ok({ reply: text, toolCalls, modelCalls: calls.made });
    if (round >= opts.maxToolRounds) {
      const notice =
        `[Stopped: the model asked to run more commands, but this request reached its limit of ` +
        `${opts.maxToolRounds} tool rounds. The commands of that last request were not run.]`;
      deps.log?.info({ requestId: deps.requestId, rounds: round }, "chat stopped at max tool rounds");
      return ok({ reply: text === "" ? notice : `${text}\n\n${notice}`, toolCalls, modelCalls: calls.made });
    }
    messages.push({
      role: "assistant",
      content: text === "" ? null : text,
      tool_calls: requested.map((c) => ({
        id: c.id,
        type: "function" as const,
        function: { name: c.name, arguments: c.arguments },
      })),
    });
    for (const call of requested) {
      const answered = await runToolCall(call, deps, opts, sandbox, out, signal);
      if (!answered.ok) return answered;
      messages.push({ role: "tool", tool_call_id: call.id, content: answered.value.text });
      if (answered.value.record) toolCalls.push(answered.value.record);
    }
  }
}

async function nextTurn(
  client: OpenAI,
  deps: ChatDeps,
  opts: ChatOptions,
  messages: ChatCompletionMessageParam[],
  round: number,
  out: (e: ChatEvent) => void,
  signal: AbortSignal,
): Promise<Result<AssistantTurn>> {
  let delivered = false;
  const result = await withModelRetry(
    () =>
      requestAssistantTurn(
        client,
        {
          model: deps.model.model,
          messages,
          tools: chatToolSpecs(
            opts.maxCommandTimeoutSeconds,
            deps.files !== undefined,
            deps.processes !== undefined,
            deps.network?.() ?? NO_NETWORK,
            offersPortLink(deps),
          ),
          stream: opts.stream,
          idleTimeoutMs: opts.modelIdleTimeoutMs,
          fallbackIdPrefix: `call_r${round}_`,
        },
        (text) => {
          delivered = true;
          out({ type: "assistant.delta", text });
        },
        signal,
      ),
    opts.retry,
    signal,
    () => delivered,
    (info) => deps.log?.warn({ requestId: deps.requestId, ...info }, "model call failed; retrying"),
  );
  if ("aborted" in result) return err(abortError(signal));
  if (!result.ok) {
    const cause = result.error.cause;
    deps.log?.warn(
      {
        requestId: deps.requestId,
        code: result.error.code,
        error: cause instanceof Error ? cause.message : cause,
      },
      "model call failed",
    );
  }
  return result;
}

/** Answers one tool call: the tool message for the model, plus the record if a command ran. */
async function runToolCall(
  call: RequestedToolCall,
  deps: ChatDeps,
  opts: ChatOptions,
  sandbox: SandboxSession,
  out: (e: ChatEvent) => void,
  signal: AbortSignal,
): Promise<Result<{ text: string; record?: ToolCallRecord }>> {
  if (
    (deps.files && FILE_TOOL_NAMES.has(call.name)) ||
    (deps.processes && PROCESS_TOOL_NAMES.has(call.name))
  ) {
    return runFileToolCall(call, sandbox, out, signal);
  }
  if (call.name === openPortLink.name && deps.links && deps.sandboxId) {
    return runPortLinkCall(call, deps.links, deps, sandbox, out, signal);
  }
  // Read-only and answered here: it needs no pod (and takes no lease).
  if (call.name === getNetwork.name) return ok({ text: getNetwork.render(deps.network?.() ?? NO_NETWORK) });
  if (call.name !== RUN_IN_SANDBOX) {
    const names = [
      RUN_IN_SANDBOX,
      getNetwork.name,
      ...(deps.files ? FILE_TOOL_NAMES : []),
      ...(deps.processes ? PROCESS_TOOL_NAMES : []),
      ...(offersPortLink(deps) ? [openPortLink.name] : []),
    ].join(", ");
    return ok({
      text: `error: there is no tool named "${call.name}"; the tools are ${names}. Nothing was run.`,
    });
  }
  const args = parseRunInSandboxArgs(call.arguments, {
    defaultTimeoutSeconds: opts.defaultCommandTimeoutSeconds,
    maxTimeoutSeconds: opts.maxCommandTimeoutSeconds,
  });
  if (!args.ok) return ok({ text: toolArgumentError(args.error, opts.maxCommandTimeoutSeconds) });
  const { command, timeoutSeconds } = args.value;

  const leased = await sandbox.ensureLease();
  if (!leased.ok) return signal.aborted ? err(abortError(signal)) : leased;
  out({ type: "tool.call", id: call.id, command });
  const ran = await sandbox.run(command, timeoutSeconds * 1000);
  if (signal.aborted) return err(abortError(signal));
  if (!ran.ok) {
    // The model's fault (the command was refused before it started): tell it; anything else ends the request.
    if (ran.error.code !== "invalid_request" && ran.error.code !== "payload_too_large") return ran;
    const record: ToolCallRecord = {
      id: call.id,
      command,
      exitCode: null,
      durationMs: 0,
      truncated: false,
      timedOut: false,
    };
    out({ type: "tool.result", ...record });
    return ok({
      text: `error: the sandbox refused the command: ${ran.error.message}. Nothing was run.`,
      record,
    });
  }
  const outcome = ran.value;
  const result = toolResultText(outcome, {
    headBytes: opts.toolOutputHeadBytes,
    tailBytes: opts.toolOutputTailBytes,
    timeoutSeconds,
  });
  const record: ToolCallRecord = {
    id: call.id,
    command,
    exitCode: outcome.exitCode,
    durationMs: outcome.durationMs,
    truncated: result.truncated,
    timedOut: outcome.timedOut,
  };
  out(toolResultEvent(record));
  return ok({ text: result.text, record });
}

/**
 * A file or process tool call on the request's pod. It shows in events and records like a command,
 * labelled `<tool> <path>` (`start_process <command>`, `<tool> <pid>`); exitCode 0 when it succeeded, null when it failed. Failures the model can fix
 * (bad path, missing file, ambiguous edit...) go back to it as the tool's answer and the loop
 * goes on; anything else (lease lost, sandbox gone) ends the request like a failed command does.
 */
async function runFileToolCall(
  call: RequestedToolCall,
  sandbox: SandboxSession,
  out: (e: ChatEvent) => void,
  signal: AbortSignal,
): Promise<Result<{ text: string; record?: ToolCallRecord }>> {
  const started = performance.now();
  let announced = false;
  const ran = await runFileTool(call.name, call.arguments, {
    sandbox: async (label) => {
      const leased = await sandbox.ensureLease();
      if (!leased.ok) return leased;
      announced = true;
      out({ type: "tool.call", id: call.id, command: label });
      return leased;
    },
    maxWriteBytes: CHAT_MAX_WRITE_BYTES,
    signal,
    ...(sandbox.env ? { env: sandbox.env } : {}),
  });
  if (signal.aborted) return err(abortError(signal));
  if (ran.kind === "bad_args") return ok({ text: ran.text });
  if (!ran.result.ok && (!announced || !MODEL_FIXABLE_CODES.has(ran.result.error.code))) {
    const e = ran.result.error;
    return err(
      e instanceof AppError ? e : new AppError("sandbox_failed", `${ran.label}: ${e.code}: ${e.message}`),
    );
  }
  const record: ToolCallRecord = {
    id: call.id,
    command: ran.label,
    exitCode: ran.result.ok ? 0 : null,
    durationMs: performance.now() - started,
    truncated: ran.result.ok && (ran.result.value.structured as { truncated?: boolean }).truncated === true,
    timedOut: false,
  };
  out(toolResultEvent(record));
  const text = ran.result.ok
    ? ran.result.value.text
    : `error ${ran.result.error.code}: ${ran.result.error.message}. Nothing was changed.`;
  return ok({ text, record });
}

/**
 * open_port_link on the session's sandbox (created at this call if the session has none yet),
 * through the one create path of POST …/ports/:port/links. The model's answer has no URL (the
 * token in it would travel to the model's provider); the event and record carry the link, and the
 * edge signs its URL for the user (edge/routes/chat.ts). A refused port or a full link list is the
 * model's to fix; anything else ends the turn like a failed command.
 */
async function runPortLinkCall(
  call: RequestedToolCall,
  links: ChatPortLinks,
  deps: ChatDeps,
  sandbox: SandboxSession,
  out: (e: ChatEvent) => void,
  signal: AbortSignal,
): Promise<Result<{ text: string; record?: ToolCallRecord }>> {
  const args = parseToolArgs(openPortLink, call.arguments);
  if (!args.ok) {
    return ok({ text: `error: invalid arguments for ${call.name}: ${args.error}. Nothing was done.` });
  }
  const started = performance.now();
  const leased = await sandbox.ensureLease();
  if (!leased.ok) return signal.aborted ? err(abortError(signal)) : leased;
  const sandboxId = deps.sandboxId?.();
  if (!sandboxId) return err(new AppError("internal", "the session's sandbox has no id"));
  const label = `${call.name} ${args.value.port}`;
  out({ type: "tool.call", id: call.id, command: label });
  const made = await links.create(deps.tenant, sandboxId, deps.requestId, args.value.port, {
    ttlSeconds: args.value.ttl_seconds ?? PORT_LINK_LIMITS.defaultTtlSeconds,
    public: args.value.public === true,
  });
  if (signal.aborted) return err(abortError(signal));
  if (!made.ok && !MODEL_FIXABLE_CODES.has(made.error.code)) return made;
  const record: ToolCallRecord = {
    id: call.id,
    command: label,
    exitCode: made.ok ? 0 : null,
    durationMs: performance.now() - started,
    truncated: false,
    timedOut: false,
    ...(made.ok
      ? {
          link: {
            sandboxId,
            linkId: made.value.id,
            port: made.value.port,
            public: made.value.public,
            expiresAt: made.value.expiresAt,
          },
        }
      : {}),
  };
  out(toolResultEvent(record));
  const text = made.ok
    ? chatPortLinkAnswer(made.value).text
    : `error ${made.error.code}: ${made.error.message}. No link was opened.`;
  return ok({ text, record });
}

function toolResultEvent(r: ToolCallRecord): ChatEvent {
  return {
    type: "tool.result",
    id: r.id,
    exitCode: r.exitCode,
    durationMs: r.durationMs,
    truncated: r.truncated,
    timedOut: r.timedOut,
    ...(r.link ? { link: r.link } : {}),
  };
}

/** `error` with the failed turn's model-call count in its answer's MODEL_CALLS_HEADER. */
function withModelCalls(error: AppError, made: number): AppError {
  if (made === 0) return error;
  return new AppError(error.code, error.message, {
    ...(error.retryAfterSeconds !== undefined ? { retryAfterSeconds: error.retryAfterSeconds } : {}),
    ...(error.details !== undefined ? { details: error.details } : {}),
    ...(error.exit !== undefined ? { exit: error.exit } : {}),
    headers: { ...error.headers, [MODEL_CALLS_HEADER]: String(made) },
    cause: error,
  });
}
