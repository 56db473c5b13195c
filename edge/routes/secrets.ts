import { SCOPES, SecretInfoSchema, SecretListSchema, SecretPutRequestSchema } from "../../shared/api.ts";
import { SecretNameSchema } from "../../shared/egress-policy.ts";
import { parseOrError } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { encodeJson, readJson } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { relayFrom } from "../relay/from-context.ts";

/**
 * /v1/secrets: the tenant's secrets, kept by the cluster that serves the request, chosen as a
 * sandbox create is (claim, X-Sandbox-Region, nearest, then the others), so a sandbox created the
 * same way finds them. Pin the region (X-Sandbox-Region) where there are several. The value goes
 * in and never comes back out.
 */

const nameParam = {
  name: "name",
  in: "path" as const,
  required: true,
  description: "secret name, [A-Za-z_][A-Za-z0-9_]{0,63}: also the variable its placeholder is under",
};

function relaySecrets(c: AppContext, method: "GET" | "PUT" | "DELETE", body?: Uint8Array) {
  const url = new URL(c.req.url);
  return relayFrom(c, { method, path: url.pathname, ...(body ? { body } : {}) });
}

function checkName(c: AppContext): void {
  const parsed = parseOrError(SecretNameSchema, c.req.param("name") ?? "", "secret name");
  if (!parsed.ok) throw parsed.error;
}

export const listSecretsRoute: RouteDef = {
  method: "GET",
  path: "/v1/secrets",
  auth: "tenant",
  scope: SCOPES.secrets,
  doc: {
    summary: "Your secrets: names, hosts, header and format; never values",
    tags: ["secrets"],
    response: SecretListSchema,
  },
  handler: async (c) => finishRelay(c, await relaySecrets(c, "GET")),
};

export const putSecretRoute: RouteDef = {
  method: "PUT",
  path: "/v1/secrets/:name",
  auth: "tenant",
  scope: SCOPES.secrets,
  body: true,
  doc: {
    summary:
      "Create or replace a secret: its value (write-only) and the hosts the egress proxy may send it to, in `header` as `format`",
    tags: ["secrets"],
    request: SecretPutRequestSchema,
    response: SecretInfoSchema,
    parameters: [nameParam],
  },
  async handler(c) {
    checkName(c);
    const parsed = parseOrError(SecretPutRequestSchema, readJson(c), "secret");
    if (!parsed.ok) throw parsed.error;
    return finishRelay(c, await relaySecrets(c, "PUT", encodeJson(parsed.value)));
  },
};

export const deleteSecretRoute: RouteDef = {
  method: "DELETE",
  path: "/v1/secrets/:name",
  auth: "tenant",
  scope: SCOPES.secrets,
  doc: {
    summary: "Delete a secret: sandboxes that use it send their placeholder unchanged from then on",
    tags: ["secrets"],
    parameters: [nameParam],
    successStatus: "204",
  },
  async handler(c) {
    checkName(c);
    return finishRelay(c, await relaySecrets(c, "DELETE"));
  },
};

export const SECRET_ROUTES: readonly RouteDef[] = [listSecretsRoute, putSecretRoute, deleteSecretRoute];
