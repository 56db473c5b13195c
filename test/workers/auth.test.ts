import { env, SELF } from "cloudflare:test";
import { base64url, exportSPKI, generateKeyPair, importJWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { TENANT_ISSUER_PUBLIC_JWK, TEST_AUDIENCE, TEST_ISSUER } from "./fixtures/test-keys.ts";
import { auth, BASE, expectError, tenantToken } from "./support.ts";

// A cheap tenant route: 404 for an unknown session means auth, scope and quota all passed.
const url = `${BASE}/v1/sessions/s-1`;
const get = (headers: Record<string, string>) => SELF.fetch(url, { headers });

function part(obj: object): string {
  return base64url.encode(JSON.stringify(obj));
}
const now = () => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}) => ({
  iss: TEST_ISSUER,
  aud: TEST_AUDIENCE,
  sub: "user-1",
  tenant: "tenant-auth",
  scope: "sandbox:chat",
  iat: now(),
  exp: now() + 300,
  ...over,
});

async function hs256(secret: Uint8Array, header: object, payload: object): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    secret as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const data = `${part(header)}.${part(payload)}`;
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(data)));
  return `${data}.${base64url.encode(sig)}`;
}

describe("tenant JWT", () => {
  it("a valid token passes (404 for a session that does not exist)", async () => {
    await expectError(await get(auth(await tenantToken({ tenant: "tenant-auth" }))), 404, "not_found");
  });

  it("no token / not a bearer token → 401 unauthenticated", async () => {
    await expectError(await get({}), 401, "unauthenticated");
    await expectError(await get({ Authorization: "Basic dXNlcjpwYXNz" }), 401, "unauthenticated");
  });

  it("alg: none → 401 invalid_token", async () => {
    const token = `${part({ alg: "none", typ: "JWT" })}.${part(claims())}.`;
    await expectError(await get(auth(token)), 401, "invalid_token");
  });

  it("HS256 signed with the issuer's public key (algorithm confusion) → 401 invalid_token", async () => {
    const pub = await importJWK(TENANT_ISSUER_PUBLIC_JWK, "RS256", { extractable: true });
    const pem = await exportSPKI(pub as CryptoKey);
    for (const secret of [
      new TextEncoder().encode(pem),
      new TextEncoder().encode(JSON.stringify(TENANT_ISSUER_PUBLIC_JWK)),
    ]) {
      const token = await hs256(
        secret,
        { alg: "HS256", typ: "JWT", kid: TENANT_ISSUER_PUBLIC_JWK.kid },
        claims(),
      );
      await expectError(await get(auth(token)), 401, "invalid_token");
    }
  });

  it("expired → 401 token_expired; not yet valid → 401 invalid_token", async () => {
    await expectError(
      await get(auth(await tenantToken({ tenant: "t", exp: now() - 60 }))),
      401,
      "token_expired",
    );
    await expectError(
      await get(auth(await tenantToken({ tenant: "t", nbf: now() + 600 }))),
      401,
      "invalid_token",
    );
  });

  it("wrong issuer or audience → 401 invalid_token", async () => {
    await expectError(await get(auth(await tenantToken({ iss: "https://evil.test" }))), 401, "invalid_token");
    await expectError(await get(auth(await tenantToken({ aud: "someone-else" }))), 401, "invalid_token");
  });

  it("unknown kid, or a key the edge does not trust → 401 invalid_token", async () => {
    await expectError(await get(auth(await tenantToken({}, { kid: "unknown-kid" }))), 401, "invalid_token");
    const { privateKey } = await generateKeyPair("RS256");
    const forged = await new SignJWT(claims())
      .setProtectedHeader({ alg: "RS256", kid: TENANT_ISSUER_PUBLIC_JWK.kid! })
      .sign(privateKey);
    await expectError(await get(auth(forged)), 401, "invalid_token");
  });

  it("missing tenant claim → 401 missing_tenant", async () => {
    await expectError(await get(auth(await tenantToken({ tenant: undefined }))), 401, "missing_tenant");
    await expectError(await get(auth(await tenantToken({ tenant: 42 }))), 401, "missing_tenant");
  });

  it("tampered payload (tenant swapped, signature kept) → 401 invalid_token", async () => {
    const token = await tenantToken({ tenant: "tenant-auth" });
    const [h, p, s] = token.split(".") as [string, string, string];
    const payload = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
    payload.tenant = "someone-else";
    const e = await expectError(await get(auth(`${h}.${part(payload)}.${s}`)), 401, "invalid_token");
    expect(e.message).toBe("the token's signature does not verify");
  });

  it("garbage → 401 invalid_token in our words, never a library's error code", async () => {
    for (const garbage of ["not.a.jwt", "garbage", "a.b.c.d.e"]) {
      const e = await expectError(await get(auth(garbage)), 401, "invalid_token");
      expect(e.message).toBe("the token is not a valid JWT");
    }
    const wrongIssuer = await expectError(
      await get(auth(await tenantToken({ iss: "https://evil.test" }))),
      401,
      "invalid_token",
    );
    expect(wrongIssuer.message).toBe(`the token's "iss" claim is not accepted here`);
    const expired = await expectError(
      await get(auth(await tenantToken({ exp: now() - 3600, iat: now() - 7200 }))),
      401,
      "token_expired",
    );
    for (const m of [wrongIssuer.message, expired.message]) expect(m).not.toMatch(/ERR_|JOSE|JWS/);
  });

  it("missing scope → 403 insufficient_scope; scp arrays count as scopes", async () => {
    const noChat = await tenantToken({ tenant: "tenant-auth", scope: "sandbox:exec" });
    await expectError(await get(auth(noChat)), 403, "insufficient_scope");
    const scp = await tenantToken({ tenant: "tenant-auth", scope: undefined, scp: ["sandbox:chat"] });
    await expectError(await get(auth(scp)), 404, "not_found");
    const noAdmin = await tenantToken({ tenant: "tenant-auth", scope: "sandbox:chat sandbox:exec" });
    await expectError(
      await SELF.fetch(`${BASE}/v1/pool`, { headers: auth(noAdmin) }),
      403,
      "insufficient_scope",
    );
    const noExec = await tenantToken({ tenant: "tenant-auth", scope: "sandbox:chat" });
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(noExec, { "Content-Type": "application/json" }),
      body: JSON.stringify({ command: "id" }),
    });
    await expectError(res, 403, "insufficient_scope");
  });
});

describe("per-tenant quota", () => {
  const burst = Number(env.TENANT_QUOTA_BURST); // vitest.config.ts sets it for the workers tests

  it("is exact under a concurrent burst, with Retry-After and RateLimit-* on 429", async () => {
    const token = await tenantToken({ tenant: "burst-a", scope: "sandbox:chat" });
    const results = await Promise.all(Array.from({ length: burst + 10 }, () => get(auth(token))));
    const limited = results.filter((r) => r.status === 429);
    const passed = results.filter((r) => r.status === 404);
    expect(passed.length).toBe(burst);
    expect(limited.length).toBe(10);
    for (const r of limited) {
      expect(Number(r.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
      expect(r.headers.get("RateLimit-Limit")).toBe(String(burst));
      expect(r.headers.get("RateLimit-Remaining")).toBe("0");
      await expectError(r, 429, "rate_limited");
    }
    const remaining = passed.map((r) => Number(r.headers.get("RateLimit-Remaining"))).sort((a, b) => a - b);
    expect(remaining).toEqual(Array.from({ length: burst }, (_, i) => i));
    await Promise.all(passed.map((r) => r.body?.cancel()));
  });

  it("is independent between tenants", async () => {
    const a = await tenantToken({ tenant: "burst-b", scope: "sandbox:chat" });
    const b = await tenantToken({ tenant: "burst-c", scope: "sandbox:chat" });
    const ra = await Promise.all(Array.from({ length: burst + 1 }, () => get(auth(a))));
    expect(ra.filter((r) => r.status === 429).length).toBe(1);
    const rb = await get(auth(b));
    expect(rb.status).toBe(404);
    expect(rb.headers.get("RateLimit-Remaining")).toBe(String(burst - 1));
    await Promise.all([...ra, rb].map((r) => r.body?.cancel()));
  });
});

describe("quota: work beyond the request", () => {
  const burst = Number(env.TENANT_QUOTA_BURST);
  const remainingAfterOneMore = async (token: string) => {
    const r = await get(auth(token));
    await r.body?.cancel();
    return Number(r.headers.get("RateLimit-Remaining"));
  };

  it("every MCP message costs a token, initialize and tools/list included", async () => {
    const token = await tenantToken({ tenant: "quota-mcp", scope: "sandbox:exec" });
    for (const method of ["initialize", "tools/list", "tools/list"]) {
      const res = await SELF.fetch(`${BASE}/mcp`, {
        method: "POST",
        headers: auth(token, {
          "Content-Type": "application/json",
          Accept: "application/json, text/event-stream",
          "MCP-Protocol-Version": "2025-06-18",
        }),
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method,
          params:
            method === "initialize"
              ? { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } }
              : {},
        }),
      });
      expect(res.status).toBe(200);
      await res.body?.cancel();
    }
    // Three MCP messages and this request: four tokens (the refill is 0.2/s here).
    expect(await remainingAfterOneMore(token)).toBeLessThanOrEqual(burst - 4 + 1);
  });
});
