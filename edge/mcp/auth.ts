import { SCOPES } from "../../shared/api.ts";
import { AppError } from "../../shared/errors.ts";
import type { AppContext } from "../app-env.ts";
import type { Principal } from "../auth/tenant-jwt.ts";

export const MCP_PATH = "/mcp";
export const RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource";

export const resourceMetadataUrl = (origin: string) => `${origin}${RESOURCE_METADATA_PATH}${MCP_PATH}`;

/** RFC 9728 protected-resource metadata for the MCP endpoint: the tenant JWT issuer is its authorization server. */
export function resourceMetadata(origin: string, issuer: string): Record<string, unknown> {
  return {
    resource: `${origin}${MCP_PATH}`,
    authorization_servers: [issuer],
    bearer_methods_supported: ["header"],
    // Never sandbox:admin: OAuth clients ask for every advertised scope, and admin is not a tenant's
    // to ask for (it is granted by ADMIN_SUBJECTS / ADMIN_AUDIENCE, tenant-jwt.ts).
    scopes_supported: [SCOPES.exec, SCOPES.chat],
    resource_name: "pi-sandbox-runtime MCP",
  };
}

/**
 * The same tenant JWT as every route. A failure is the usual 401 envelope plus the challenge MCP
 * clients follow (RFC 9728 §5.1): `WWW-Authenticate: Bearer resource_metadata="…"`.
 */
export async function authenticateMcp(c: AppContext): Promise<{ principal: Principal; token: string }> {
  const origin = new URL(c.req.url).origin;
  const header = c.req.header("Authorization");
  const token = header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
  const who = await c.get("deps").tokens.verify(token);
  if (who.ok && token) return { principal: who.value, token };
  const error = who.ok ? new AppError("unauthenticated", "missing bearer token") : who.error;
  const params = [`resource_metadata="${resourceMetadataUrl(origin)}"`];
  // RFC 6750 §3.1: no error attribute when no credentials were sent at all.
  if (token)
    params.push(`error="invalid_token"`, `error_description="${error.message.replace(/["\\]/g, "")}"`);
  throw new AppError(error.code, error.message, {
    headers: { "WWW-Authenticate": `Bearer ${params.join(", ")}` },
  });
}
