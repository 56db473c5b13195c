import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { LIMITS } from "../../shared/api.ts";
import { ok } from "../../shared/errors.ts";
import {
  CHAT_TOOLS,
  createSandbox,
  deleteSandbox,
  inputJsonSchema,
  outputJsonSchema,
  parseToolArgs,
  SandboxIdArg,
  type ToolDefinition,
} from "../../shared/tools/definitions.ts";
import { getNetwork, runGetNetwork } from "../../shared/tools/network-tool.ts";
import {
  PORT_LINK_TOOL_NAMES,
  PORT_LINK_TOOLS,
  runPortLinkTool,
} from "../../shared/tools/port-link-tools.ts";
import { PROCESS_TOOL_NAMES, PROCESS_TOOLS, runProcessTool } from "../../shared/tools/process-tools.ts";
import {
  runSandboxTool,
  type ToolAnswer,
  type ToolFailure,
  type ToolResult,
} from "../../shared/tools/run-tool.ts";
import {
  routeBackend,
  routeNetworkReader,
  routePortLinkBackend,
  routeProcessBackend,
} from "./route-backend.ts";
import type { RouteClient } from "./route-client.ts";

/** The sandbox tools as MCP offers them: the chat tools plus an optional sandbox_id. */
const SANDBOX_TOOLS: ToolDefinition[] = CHAT_TOOLS.map((t) => ({
  ...(t as unknown as ToolDefinition),
  input: t.input.extend({ sandbox_id: SandboxIdArg }),
}));
/** The process tools need a sandbox that lives: sandbox_id is required (a disposable pod would kill them). */
const MCP_PROCESS_TOOLS: ToolDefinition[] = PROCESS_TOOLS.map((t) => ({
  ...(t as unknown as ToolDefinition),
  input: t.input.extend({
    sandbox_id: z.string().min(1).max(200).describe("The sandbox (from create_sandbox) the process runs in."),
  }),
}));
/** Read-only: the owner changes a policy through the API, never the model (shared/tools/network-tool.ts). */
const MCP_GET_NETWORK: ToolDefinition = {
  ...(getNetwork as unknown as ToolDefinition),
  input: getNetwork.input.extend({ sandbox_id: SandboxIdArg }),
};
/** A port link belongs to a sandbox: sandbox_id is required. */
const MCP_PORT_LINK_TOOLS: ToolDefinition[] = PORT_LINK_TOOLS.map((t) => ({
  ...(t as unknown as ToolDefinition),
  input: t.input.extend({
    sandbox_id: z.string().min(1).max(200).describe("The sandbox (from create_sandbox) whose port to open."),
  }),
}));
const MCP_TOOLS: ToolDefinition[] = [
  ...SANDBOX_TOOLS,
  MCP_GET_NETWORK,
  ...MCP_PROCESS_TOOLS,
  ...MCP_PORT_LINK_TOOLS,
  createSandbox as unknown as ToolDefinition,
  deleteSandbox as unknown as ToolDefinition,
];
const BY_NAME = new Map(MCP_TOOLS.map((t) => [t.name, t]));

/** A disposable sandbox for a file tool called without sandbox_id: short idle, deleted right after. */
const ONE_SHOT_IDLE_SECONDS = 60;

/** tools/list: JSON Schema from the shared zod definitions (2020-12, as MCP 2025-06-18 expects). */
export function listTools(): Tool[] {
  return MCP_TOOLS.map((t) => ({
    name: t.name,
    description: t.description,
    inputSchema: inputJsonSchema(t.input) as Tool["inputSchema"],
    outputSchema: outputJsonSchema(t.output) as NonNullable<Tool["outputSchema"]>,
  }));
}

/** MCP key for our error in a tool result's _meta (namespaced as the spec asks). */
export const ERROR_META_KEY = "pi-sandbox-runtime/error";

export function toolError(f: ToolFailure): CallToolResult {
  const rid = f.requestId ? ` (request ${f.requestId})` : "";
  return {
    isError: true,
    content: [{ type: "text", text: `error ${f.code}: ${f.message}${rid}` }],
    _meta: {
      [ERROR_META_KEY]: {
        code: f.code,
        message: f.message,
        ...(f.requestId ? { requestId: f.requestId } : {}),
      },
    },
  };
}

const success = (a: ToolAnswer): CallToolResult => ({
  content: [{ type: "text", text: a.text }],
  structuredContent: a.structured as Record<string, unknown>,
});

/**
 * tools/call. Every effect goes through the edge's public routes (`client`), so the caller's
 * scopes, the tenant's quota and sandbox ownership are checked there, once, for MCP and HTTP alike.
 * Failures are tool results with `isError: true` and our stable code, never protocol errors:
 * the model is meant to read them.
 */
export async function callTool(
  name: string,
  rawArgs: unknown,
  client: RouteClient,
  signal: AbortSignal,
): Promise<CallToolResult> {
  const tool = BY_NAME.get(name);
  if (!tool) return toolError({ code: "invalid_request", message: `there is no tool named "${name}"` });
  const args = parseToolArgs(tool, rawArgs ?? {});
  if (!args.ok)
    return toolError({ code: "invalid_request", message: `invalid arguments for ${name}: ${args.error}` });
  const result = await dispatchTool(tool, args.value as Record<string, unknown>, client, signal);
  return result.ok ? success(result.value) : toolError(result.error);
}

async function dispatchTool(
  tool: ToolDefinition,
  args: Record<string, unknown>,
  client: RouteClient,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer>> {
  if (tool.name === createSandbox.name) {
    const a = args as z.infer<typeof createSandbox.input>;
    const made = await client.json("POST", "/v1/sandboxes", {
      json: a.idle_timeout_seconds === undefined ? {} : { idleTimeoutSeconds: a.idle_timeout_seconds },
      signal,
    });
    if (!made.ok) return made;
    const body = made.value.body as { id: string; idleTimeoutSeconds: number; expiresAt?: string };
    const out = {
      sandbox_id: body.id,
      idle_timeout_seconds: body.idleTimeoutSeconds,
      ...(body.expiresAt ? { expires_at: body.expiresAt } : {}),
    };
    return ok({ structured: out, text: createSandbox.render(out) });
  }
  if (tool.name === deleteSandbox.name) {
    const a = args as z.infer<typeof deleteSandbox.input>;
    const gone = await client.json("DELETE", `/v1/sandboxes/${encodeURIComponent(a.sandbox_id)}`, { signal });
    if (!gone.ok) return gone;
    const out = { sandbox_id: a.sandbox_id, deleted: true };
    return ok({ structured: out, text: deleteSandbox.render(out) });
  }
  if (tool.name === getNetwork.name) {
    const id = (args as { sandbox_id?: string }).sandbox_id;
    return runGetNetwork(routeNetworkReader(client, id), signal);
  }
  if (PROCESS_TOOL_NAMES.has(tool.name)) {
    const { sandbox_id: id, ...processArgs } = args as { sandbox_id: string };
    return runProcessTool(tool.name, processArgs, routeProcessBackend(client, id), signal);
  }
  if (PORT_LINK_TOOL_NAMES.has(tool.name)) {
    const { sandbox_id: id, ...linkArgs } = args as { sandbox_id: string };
    return runPortLinkTool(tool.name, linkArgs, routePortLinkBackend(client, id), signal);
  }
  const { sandbox_id: sandboxId, ...toolArgs } = args as { sandbox_id?: string };
  const opts = { defaultTimeoutSeconds: LIMITS.defaultTimeoutSeconds, signal };
  if (sandboxId !== undefined || tool.name === "run_in_sandbox") {
    return runSandboxTool(tool.name, toolArgs, routeBackend(client, sandboxId), opts);
  }
  // A file tool without a sandbox: a one-shot sandbox, deleted on every path.
  const made = await client.json("POST", "/v1/sandboxes", {
    json: { idleTimeoutSeconds: ONE_SHOT_IDLE_SECONDS },
    signal,
  });
  if (!made.ok) return made;
  const id = (made.value.body as { id: string }).id;
  try {
    return await runSandboxTool(tool.name, toolArgs, routeBackend(client, id), opts);
  } finally {
    await client.json("DELETE", `/v1/sandboxes/${encodeURIComponent(id)}`, {
      signal: AbortSignal.timeout(10_000),
    });
  }
}
