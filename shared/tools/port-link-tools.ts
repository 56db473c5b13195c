import { z } from "zod";
import { PORT_LINK_LIMITS, type PortLink, type PortLinkCreateRequest, type PortLinkRecord } from "../api.ts";
import { ok } from "../errors.ts";
import type { ToolDefinition } from "./definitions.ts";
import type { ToolAnswer, ToolResult } from "./run-tool.ts";

/*
 * The port link tool (issue 27 item 4): an expiring URL to a port a process in the sandbox listens
 * on, for the user to open (a dev server's page). MCP opens it through the public route (http exec
 * mode; api mode answers 501 as a tool error). Chat (session mode, http exec mode) opens it in the
 * agent, which holds no link-signing key: the model gets `chatPortLinkAnswer` (no URL), and the
 * edge signs the URL into what reaches the user (edge/routes/chat.ts).
 */

const define = <I extends z.ZodObject, O extends z.ZodObject>(d: ToolDefinition<I, O>) => d;

export const OpenPortLinkOutput = z.object({
  url: z.string().describe("Open this URL to reach the port (its own origin; the token is in it)"),
  expires_at: z.string().describe("When the link stops working (ISO 8601)"),
  link_id: z.string(),
  port: z.number().int(),
  public: z.boolean().describe("false: requests also need the tenant's token"),
});
export type OpenPortLinkOutput = z.infer<typeof OpenPortLinkOutput>;

export const openPortLink = define({
  name: "open_port_link",
  description:
    "Give the user a URL to a port a process in the sandbox listens on (e.g. a dev server started with " +
    "start_process). The link expires after ttl_seconds and dies with the sandbox. Private by default: the " +
    "user's requests then also need their API token; public: anyone holding the URL can use it. Start the " +
    "server first: a port nothing listens on answers 502 port_not_listening.",
  input: z.object({
    port: z
      .number()
      .int()
      .min(1, "a port is 1-65535")
      .max(65_535, "a port is 1-65535")
      .describe("The port in the sandbox (1-65535) the server listens on (on 127.0.0.1 or 0.0.0.0)."),
    ttl_seconds: z
      .number()
      .int()
      .min(PORT_LINK_LIMITS.minTtlSeconds)
      .max(PORT_LINK_LIMITS.maxTtlSeconds)
      .optional()
      .describe(
        `How long the link works (${PORT_LINK_LIMITS.minTtlSeconds}-${PORT_LINK_LIMITS.maxTtlSeconds} s, default ${PORT_LINK_LIMITS.defaultTtlSeconds}).`,
      ),
    public: z
      .boolean()
      .optional()
      .describe("Anyone with the URL may use it (default false: only with the user's token)."),
  }),
  output: OpenPortLinkOutput,
  render: (o) =>
    `${o.public ? "public" : "private"} link to port ${o.port}, until ${o.expires_at}:\n${o.url}` +
    (o.public ? "" : "\n(requests to it also need the user's API token)"),
});

export const PORT_LINK_TOOLS = [openPortLink] as const;

/**
 * What a chat model gets back from open_port_link: everything but the URL. The URL carries the
 * link's token, and a model's context goes to its provider (and may be logged there); the user
 * receives the URL in the chat's `tool.result` event / `toolCalls[]` instead.
 */
export function chatPortLinkAnswer(link: PortLinkRecord): ToolAnswer {
  const structured = {
    link_id: link.id,
    port: link.port,
    public: link.public,
    expires_at: link.expiresAt,
    url: null,
    note: "the user receives the URL",
  };
  return { structured, text: JSON.stringify(structured) };
}

export const PORT_LINK_TOOL_NAMES: ReadonlySet<string> = new Set(PORT_LINK_TOOLS.map((t) => t.name));

/** Where a link is opened: one sandbox's ports (MCP: the public route with the caller's token). */
export interface PortLinkToolBackend {
  open(port: number, body: PortLinkCreateRequest, signal: AbortSignal): Promise<ToolResult<PortLink>>;
}

/** Runs one port link tool (validated arguments) against `backend`. */
export async function runPortLinkTool(
  name: string,
  args: Record<string, unknown>,
  backend: PortLinkToolBackend,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer>> {
  if (name !== openPortLink.name) {
    return { ok: false, error: { code: "invalid_request", message: `there is no tool named "${name}"` } };
  }
  const a = args as z.infer<typeof openPortLink.input>;
  const opened = await backend.open(
    a.port,
    { ttlSeconds: a.ttl_seconds ?? PORT_LINK_LIMITS.defaultTtlSeconds, public: a.public === true },
    signal,
  );
  if (!opened.ok) return opened;
  const out: OpenPortLinkOutput = {
    url: opened.value.url,
    expires_at: opened.value.expiresAt,
    link_id: opened.value.id,
    port: opened.value.port,
    public: opened.value.public,
  };
  return ok({ structured: out, text: openPortLink.render(out) });
}
