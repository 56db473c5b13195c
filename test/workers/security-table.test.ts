import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RouteDef } from "../../edge/app-env.ts";
import { createTokenVerifier } from "../../edge/auth/tenant-jwt.ts";
import { ROUTES } from "../../edge/routes/index.ts";
import { SCOPES } from "../../shared/api.ts";
import { ERROR_STATUS } from "../../shared/errors.ts";
import {
  TENANT_ISSUER_PUBLIC_JWK,
  TEST_ADMIN_SUBJECT,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "./fixtures/test-keys.ts";
import { auth, BASE, expectError, tenantToken } from "./support.ts";

// The security table: every tenant route, refused the same way whatever it does. No token → 401;
// a token without the route's scope → 403; `sandbox:admin` counts only for a configured admin
// (ADMIN_SUBJECTS / ADMIN_AUDIENCE), so a tenant token carrying it → 403 on the admin routes.
// (Another tenant's sandbox id → 404 is the agent's to decide: test/e2e/stack-sandboxes.test.ts.)

const TENANT_ROUTES = ROUTES.filter((r) => r.auth === "tenant");
const ALL_SCOPES = Object.values(SCOPES) as string[];
const needs = (r: RouteDef): string[] => (r.scope === undefined ? [] : [r.scope].flat());
const isAdminRoute = (r: RouteDef) => needs(r).includes(SCOPES.admin);

/** A concrete URL for a route pattern: `:id` and `:path{.+}` get harmless values. */
function urlOf(r: RouteDef): string {
  return (
    BASE + r.path.replace(/:(\w+)(\{[^}]*\})?/g, (_m, name: string) => (name === "path" ? "a.txt" : "x-1"))
  );
}

function call(r: RouteDef, headers: Record<string, string>): Promise<Response> {
  const hasBody = r.method === "POST" || r.method === "PUT";
  return SELF.fetch(urlOf(r), {
    method: r.method,
    headers: { ...headers, ...(hasBody ? { "Content-Type": "application/json" } : {}) },
    ...(hasBody ? { body: "{}" } : {}),
  });
}

describe("security table: every tenant route", () => {
  it("covers the routes it names (a new tenant route is in the table by construction)", () => {
    expect(TENANT_ROUTES.length).toBeGreaterThan(10);
    // Every tenant route names a scope: none is open to any valid token (cancel included).
    expect(TENANT_ROUTES.filter((r) => needs(r).length === 0).map((r) => `${r.method} ${r.path}`)).toEqual(
      [],
    );
  });

  for (const r of TENANT_ROUTES) {
    const name = `${r.method} ${r.path}`;
    it(`${name}: no token → 401; without its scope → 403`, async () => {
      await expectError(await call(r, {}), 401, "unauthenticated");
      const others = ALL_SCOPES.filter((s) => !needs(r).includes(s)).join(" ");
      const wrong = await tenantToken({
        tenant: `table-${name.replace(/[^A-Za-z0-9.-]+/g, "-")}`,
        sub: TEST_ADMIN_SUBJECT,
        scope: others,
      });
      await expectError(await call(r, auth(wrong)), 403, "insufficient_scope");
    });
  }

  // A WebSocket route also takes the token as a `bearer.<jwt>` subprotocol (browsers): the same table.
  for (const r of TENANT_ROUTES.filter((x) => x.websocket)) {
    const name = `${r.method} ${r.path}`;
    it(`${name} (WebSocket, token as a subprotocol): garbage → 401; without its scope → 403`, async () => {
      const upgrade = (protocols: string) =>
        SELF.fetch(urlOf(r), { headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": protocols } });
      await expectError(await upgrade("pi-sandbox.terminal.v1, bearer.not-a-jwt"), 401, "invalid_token");
      const wrong = await tenantToken({
        tenant: "table-ws",
        sub: TEST_ADMIN_SUBJECT,
        scope: ALL_SCOPES.filter((s) => !needs(r).includes(s)).join(" "),
      });
      await expectError(await upgrade(`pi-sandbox.terminal.v1, bearer.${wrong}`), 403, "insufficient_scope");
    });
  }

  for (const r of TENANT_ROUTES.filter(isAdminRoute)) {
    const name = `${r.method} ${r.path}`;
    it(`${name}: a tenant token carrying sandbox:admin → 403; the configured admin passes`, async () => {
      const tenant = await tenantToken({
        tenant: "table-tenant",
        sub: "user-1",
        scope: ALL_SCOPES.join(" "),
      });
      const refused = await call(r, auth(tenant));
      expect(refused.status).toBe(403);
      const body = (await refused.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("insufficient_scope");
      expect(body.error.message).toContain("ADMIN_SUBJECTS");
      const admin = await tenantToken({ tenant: "table-ops", sub: TEST_ADMIN_SUBJECT, scope: SCOPES.admin });
      const res = await call(r, auth(admin));
      // Past auth and scope: what follows (no agent connected here) is the route's own answer.
      expect([401, 403]).not.toContain(res.status);
      await res.body?.cancel();
    });
  }

  it("another tenant's session id → 404, the same as one that does not exist", async () => {
    const mine = await tenantToken({ tenant: "table-a", scope: SCOPES.chat });
    const theirs = await tenantToken({ tenant: "table-b", scope: SCOPES.chat });
    const res = await SELF.fetch(`${BASE}/v1/sessions/s-owned-by-a`, { headers: auth(theirs) });
    await expectError(res, 404, "not_found");
    await expectError(
      await SELF.fetch(`${BASE}/v1/sessions/s-owned-by-a`, { headers: auth(mine) }),
      404,
      "not_found",
    );
  });
});

describe("admin is apart", () => {
  it("the protected-resource metadata advertises no admin scope", async () => {
    for (const path of [
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-protected-resource/mcp",
    ]) {
      const res = await SELF.fetch(`${BASE}${path}`);
      expect(res.status).toBe(200);
      const meta = (await res.json()) as { scopes_supported: string[] };
      expect(meta.scopes_supported).toEqual([SCOPES.exec, SCOPES.chat]);
    }
  });

  it("ADMIN_AUDIENCE: a token for that audience is an admin (and accepted); the tenant audience is not", async () => {
    const verifier = createTokenVerifier({
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      jwksUrl: undefined,
      jwks: { keys: [TENANT_ISSUER_PUBLIC_JWK] },
      algorithms: ["RS256"],
      clockToleranceSeconds: 5,
      tenantClaim: "tenant",
      regionClaim: "region",
      adminSubjects: [],
      adminAudience: "pi-sandbox-admin",
    });
    const scopesFor = async (aud: string | string[], sub = "ops-1") => {
      const v = await verifier.verify(await tenantToken({ aud, sub, scope: "sandbox:exec sandbox:admin" }));
      if (!v.ok) throw v.error;
      return v.value.scopes;
    };
    expect(await scopesFor("pi-sandbox-admin")).toContain(SCOPES.admin);
    expect(await scopesFor([TEST_AUDIENCE, "pi-sandbox-admin"])).toContain(SCOPES.admin);
    expect(await scopesFor(TEST_AUDIENCE)).toEqual([SCOPES.exec]);
    // The subject list of the deployed config does not apply to this verifier: no subject is special.
    expect(await scopesFor(TEST_AUDIENCE, TEST_ADMIN_SUBJECT)).toEqual([SCOPES.exec]);
  });
});

describe("/mcp", () => {
  it("authenticates before it reads the body: no token and an oversized body → 401, not 413", async () => {
    const big = new Uint8Array(3 * 1024 * 1024); // over MAX_BODY_BYTES (2 MiB)
    const res = await SELF.fetch(`${BASE}/mcp`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
      body: big,
    });
    expect(res.status).toBe(ERROR_STATUS.unauthenticated);
    expect(res.headers.get("WWW-Authenticate")).toContain("resource_metadata=");
    await expectError(res, 401, "unauthenticated");
  });

  it("still limits an authenticated body (413)", async () => {
    const token = await tenantToken({ tenant: "mcp-big", scope: SCOPES.exec });
    const res = await SELF.fetch(`${BASE}/mcp`, {
      method: "POST",
      headers: auth(token, {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      }),
      body: new Uint8Array(3 * 1024 * 1024),
    });
    await expectError(res, 413, "payload_too_large");
  });
});
