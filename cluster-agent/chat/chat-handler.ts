import type { ChatEvent, ChatResponse, RelayChatRequest } from "../../shared/api.ts";
import { err, ok, type Result } from "../../shared/errors.ts";
import type { SandboxFiles, SandboxProcesses } from "../exec/executor.ts";
import type { AcquireRequest } from "../leases/types.ts";
import { useNetwork } from "../requests/exec-request.ts";
import type { AcquiredSandbox, LeasedSandboxDeps } from "../requests/leased-sandbox.ts";
import type { ChatOptionsInput } from "./chat-options.ts";
import type { ModelConfig } from "./model-config.ts";
import { type ChatLog, type ChatPortLinks, runChat } from "./run-chat.ts";
import { SessionSandbox, type SessionSandboxes } from "./session-sandbox.ts";

/** The per-request context the agent's HTTP route hands over (cluster-agent/http ChatContext). */
export interface ChatRequestContext {
  tenant: string;
  requestId: string;
  signal: AbortSignal;
  emit: (e: ChatEvent) => void;
}

export interface ChatHandlerDeps {
  /** readModelConfig(env): an error here answers every chat with it, before any lease is taken. */
  model: Result<ModelConfig>;
  /** The lease manager's acquire (LeaseManager.acquire fits). */
  acquire(req: AcquireRequest): Promise<Result<AcquiredSandbox>>;
  executor: LeasedSandboxDeps["executor"];
  bus: LeasedSandboxDeps["bus"];
  /** The agent's sandbox files (cluster-agent/exec/files.ts); without them chat offers only run_in_sandbox. */
  files?: SandboxFiles;
  /** Long-lived processes (http exec mode): with them chat offers the process tools. */
  processes?: SandboxProcesses;
  options?: ChatOptionsInput;
  log?: ChatLog;
  /** The agent's sandbox service: chat with `sandbox: "session"` runs on the session's sandbox. */
  sandboxes?: SessionSandboxes;
  /** The egress proxy's variables for request-mode commands (absent: no proxy runs here). */
  egressEnv?: Readonly<Record<string, string>>;
  /** EGRESS_ALLOW_ANY_HOST. */
  allowAnyHost?: boolean;
  /** Port links (http exec mode): session-mode chat offers open_port_link with them. */
  links?: ChatPortLinks;
}

/**
 * Binds the agent's long-lived parts (model config, lease manager, executor) into the function the
 * HTTP route calls once per request; each call runs a fresh `runChat`. Like runChat, it emits the
 * terminal `done`/`error` event itself (none after an abort), so the route must not add another.
 */
export function createChatHandler(
  deps: ChatHandlerDeps,
): (req: RelayChatRequest, ctx: ChatRequestContext) => Promise<Result<ChatResponse>> {
  return async (req, ctx) => {
    if (!deps.model.ok) {
      if (!ctx.signal.aborted) ctx.emit({ type: "error", error: deps.model.error.toBody(ctx.requestId) });
      return err(deps.model.error);
    }
    const model = deps.model.value;
    const session =
      req.sessionSandbox && deps.sandboxes
        ? new SessionSandbox(
            deps.sandboxes,
            { tenant: ctx.tenant, requestId: ctx.requestId },
            req.sessionSandbox.id,
            req.network,
          )
        : undefined;
    // Request mode: the policy goes with the request's own pod (as POST /v1/exec's).
    const net: ReturnType<typeof useNetwork> = session
      ? ok({})
      : useNetwork(req.network, { env: deps.egressEnv, allowAnyHost: deps.allowAnyHost });
    if (!net.ok) {
      if (!ctx.signal.aborted) ctx.emit({ type: "error", error: net.error.toBody(ctx.requestId) });
      return net;
    }
    const { network, env } = net.value;
    const requestView = { allow: network?.allow ?? [], deny: network?.deny ?? [], secrets: [] };
    const result = await runChat(
      req,
      {
        tenant: ctx.tenant,
        requestId: ctx.requestId,
        model,
        acquire: session
          ? (signal) => session.acquire(signal)
          : (signal) =>
              deps.acquire({
                tenant: ctx.tenant,
                requestId: ctx.requestId,
                signal,
                ...(network ? { network } : {}),
              }),
        ...(env ? { env } : {}),
        network: session ? () => session.networkView() : () => requestView,
        ...(session
          ? {
              sandboxId: () => session.sandboxId,
              ...(deps.links ? { links: deps.links } : {}),
              ...(session.expired ? { sessionNote: expiredNote(session.expired) } : {}),
            }
          : {}),
        executor: deps.executor,
        bus: deps.bus,
        ...(deps.files ? { files: deps.files } : {}),
        ...(deps.processes ? { processes: deps.processes } : {}),
        ...(deps.options ? { options: deps.options } : {}),
        ...(deps.log ? { log: deps.log } : {}),
      },
      ctx.emit,
      ctx.signal,
    );
    if (!result.ok) await session?.discardCreated();
    return result;
  };
}

/** What the model is told when the session's sandbox is gone: earlier turns' files are lost. */
function expiredNote(id: string): string {
  return (
    `Note: this chat session's sandbox (${id}) expired or was deleted since the last turn; ` +
    "a fresh, empty sandbox is used from now on, so files and processes from earlier turns are gone."
  );
}
