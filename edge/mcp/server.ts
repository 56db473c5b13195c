import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import type { Principal } from "../auth/tenant-jwt.ts";
import type { RouteClient } from "./route-client.ts";
import { callTool, listTools } from "./tools.ts";

export const MCP_SERVER_INFO = { name: "pi-sandbox-runtime", version: "0.1.0" } as const;

/**
 * Answers one MCP POST with the SDK's web-standard Streamable HTTP transport, stateless (no
 * Mcp-Session-Id) with JSON responses: a Worker request may land on any isolate, and nothing
 * here needs server-to-client streaming; what must outlive a request (sandboxes) lives behind the
 * routes. A fresh server and transport per request, as the SDK requires in stateless mode.
 */
export async function handleMcpPost(
  req: Request,
  parsedBody: unknown,
  who: { principal: Principal; token: string },
  client: RouteClient,
): Promise<Response> {
  const server = new Server(MCP_SERVER_INFO, {
    capabilities: { tools: { listChanged: false } },
    instructions:
      "Tools run in isolated Linux sandboxes (no network). Without sandbox_id each call gets a fresh pod; " +
      "call create_sandbox to keep files and state across calls, and delete_sandbox when done. " +
      "Long-running commands (servers, REPLs) go to start_process in such a sandbox; read their output with read_process_output.",
    // The server never elicits, so it never validates JSON Schema at run time; this keeps the
    // SDK's default validator (which generates code, refused by workerd) out of the request.
    jsonSchemaValidator: {
      getValidator: () => () => ({ valid: false, data: undefined, errorMessage: "unused" }),
    },
  });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listTools() }));
  server.setRequestHandler(CallToolRequestSchema, (request, extra) =>
    callTool(request.params.name, request.params.arguments, client, extra.signal),
  );
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  await server.connect(transport);
  try {
    return await transport.handleRequest(req, {
      parsedBody,
      authInfo: {
        token: who.token,
        clientId: who.principal.subject,
        scopes: who.principal.scopes,
        extra: { tenant: who.principal.tenant },
      },
    });
  } finally {
    // JSON mode: the response is complete once handleRequest resolves.
    await server.close();
  }
}
