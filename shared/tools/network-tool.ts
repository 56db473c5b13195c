import { z } from "zod";
import { ok } from "../errors.ts";
import type { ToolDefinition } from "./definitions.ts";
import type { ToolAnswer, ToolResult } from "./run-tool.ts";

/*
 * What the network is for the sandbox a model works in, and the read-only tool that tells it
 * (get_network), shared by the chat loop and the MCP server like the other tools.
 *
 * The model can read its policy, never change it: the policy is the owner's boundary against what
 * the model does, and the model acts on text it did not write (web pages, package READMEs, a
 * repository's files). A prompt injection that could call "allow host X" would open the very
 * route the policy exists to close (sending the workspace, or a secret's use, to X). Widening is
 * the owner's call, through PUT /v1/sandboxes/:id/network or a request's `network`.
 */

export const NetworkOutput = z.object({
  allow: z.array(z.string()).describe("Host patterns, IPs or CIDRs the sandbox may reach (empty: none)"),
  deny: z.array(z.string()).describe("Refused even when an allow entry matches"),
  secrets: z
    .array(z.string())
    .optional()
    .describe(
      "Environment variables holding a secret's placeholder (never its value); absent: not known here",
    ),
});
export type NetworkView = z.infer<typeof NetworkOutput>;

/** No network: the default of every sandbox and pod. */
export const NO_NETWORK: NetworkView = { allow: [], deny: [], secrets: [] };

/**
 * What the model reads about the network, as lines (system prompt, tool answer). An allow list is
 * never stored where no proxy runs (such a policy is refused), so allow entries mean a proxy.
 */
export function describeNetwork(v: NetworkView): string[] {
  if (v.allow.length === 0)
    return ["- There is no network access: every connection out of the sandbox is refused."];
  const lines = [
    `- Network: only these destinations are reachable, over HTTP and HTTPS through a proxy: ${v.allow.join(", ")}.`,
    ...(v.deny.length > 0 ? [`  Refused even so: ${v.deny.join(", ")}.`] : []),
    "  Everything else is refused (curl exits 56, pip and npm report a proxy or connection error). Tools that",
    "  ignore HTTP_PROXY/HTTPS_PROXY (raw sockets, ping, DNS lookups) get no network at all.",
    "  You cannot change this policy; if the task needs another host, say which one and ask the user to allow it.",
  ];
  if (v.secrets?.length)
    lines.push(
      `- Secrets: ${v.secrets.map((s) => `$${s}`).join(", ")} hold placeholders, not the real values. Use them as they are`,
      '  (e.g. -H "Authorization: Bearer $NAME"): the proxy puts the real value in their place only in requests to',
      "  the hosts each secret is bound to. Printing them shows only the placeholder.",
    );
  return lines;
}

/** A sentence or two for a tool description (run_in_sandbox). */
export function networkSentence(v: NetworkView): string {
  if (v.allow.length === 0) return "There is no network.";
  const reach = `The network reaches only ${v.allow.join(", ")} (through a proxy); everything else is refused.`;
  return v.secrets?.length
    ? `${reach} ${v.secrets.map((s) => `$${s}`).join(", ")} hold secret placeholders the proxy replaces for their hosts.`
    : reach;
}

export const getNetwork: ToolDefinition<z.ZodObject<Record<string, never>>, typeof NetworkOutput> = {
  name: "get_network",
  description:
    "Read the sandbox's current network policy: which hosts it may reach (everything else is refused) " +
    "and which environment variables hold secret placeholders. Read-only: only the user can change it.",
  input: z.object({}),
  output: NetworkOutput,
  render: (o) => describeNetwork(o).join("\n"),
};

/** Runs get_network over whatever reads the policy where the call runs. */
export async function runGetNetwork(
  read: (signal: AbortSignal) => Promise<ToolResult<NetworkView>>,
  signal: AbortSignal,
): Promise<ToolResult<ToolAnswer<NetworkView>>> {
  const got = await read(signal);
  if (!got.ok) return got;
  return ok({ structured: got.value, text: getNetwork.render(got.value) });
}
