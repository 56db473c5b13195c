import { Hono } from "hono";
import { SCOPES, SecretPutRequestSchema } from "../../shared/api.ts";
import { SecretNameSchema } from "../../shared/egress-policy.ts";
import { AppError, errorResponse, parseOrError } from "../../shared/errors.ts";
import type { EventBus } from "../events/bus.ts";
import type { SandboxVars } from "../sandboxes/routes.ts";
import type { TenantSecrets } from "./tenant-secrets.ts";

/**
 * /v1/secrets: the caller's tenant's secrets. `PUT /v1/secrets/:name` creates or replaces one
 * (the value is write-only), `GET /v1/secrets` lists names and bindings, `DELETE` removes one.
 * Another tenant's name is simply absent (`secret_not_found`). No answer, event or log line here
 * carries a value.
 */
export function secretRoutes(deps: {
  secrets: TenantSecrets;
  bus: EventBus;
}): Hono<{ Variables: SandboxVars }> {
  const app = new Hono<{ Variables: SandboxVars }>();
  app.use("/v1/secrets*", async (c, next) => {
    if (!c.get("claims").scopes.includes(SCOPES.secrets))
      return errorResponse(
        new AppError("insufficient_scope", `this route needs the ${SCOPES.secrets} scope`),
        c.get("requestId"),
      );
    await next();
  });
  const nameOf = (raw: string) => parseOrError(SecretNameSchema, raw, "secret name");

  app.get("/v1/secrets", async (c) => {
    const r = await deps.secrets.list(c.get("claims").tenant);
    return r.ok ? c.json({ secrets: r.value }) : errorResponse(r.error, c.get("requestId"));
  });

  app.put("/v1/secrets/:name", async (c) => {
    const requestId = c.get("requestId");
    const name = nameOf(c.req.param("name"));
    if (!name.ok) return errorResponse(name.error, requestId);
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(c.get("body")));
    } catch {
      return errorResponse(new AppError("invalid_json", "the body is not valid JSON"), requestId);
    }
    const parsed = parseOrError(SecretPutRequestSchema, body, "secret");
    if (!parsed.ok) return errorResponse(parsed.error, requestId);
    const tenant = c.get("claims").tenant;
    const r = await deps.secrets.put(tenant, name.value, parsed.value);
    if (!r.ok) return errorResponse(r.error, requestId);
    deps.bus.emit({ type: "secret.changed", requestId, tenant, data: { name: name.value, change: "put" } });
    return c.json(r.value);
  });

  app.delete("/v1/secrets/:name", async (c) => {
    const requestId = c.get("requestId");
    const name = nameOf(c.req.param("name"));
    if (!name.ok) return errorResponse(name.error, requestId);
    const tenant = c.get("claims").tenant;
    const r = await deps.secrets.delete(tenant, name.value);
    if (!r.ok) return errorResponse(r.error, requestId);
    deps.bus.emit({
      type: "secret.changed",
      requestId,
      tenant,
      data: { name: name.value, change: "delete" },
    });
    return c.body(null, 204);
  });
  return app;
}
