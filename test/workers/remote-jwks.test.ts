import { afterEach, describe, expect, it } from "vitest";
import { createTokenVerifier } from "../../edge/auth/tenant-jwt.ts";
import { TENANT_ISSUER_PUBLIC_JWK, TEST_AUDIENCE, TEST_ISSUER } from "./fixtures/test-keys.ts";
import { tenantToken } from "./support.ts";

const realFetch = globalThis.fetch;
afterEach(() => {
  globalThis.fetch = realFetch;
});

describe("tenant JWT against a JWKS URL (createRemoteJWKSet)", () => {
  it("fetches the key set once per isolate and verifies; unknown kid is rejected", async () => {
    const fetched: string[] = [];
    globalThis.fetch = (async (input: RequestInfo | URL) => {
      fetched.push(String(input instanceof Request ? input.url : input));
      return Response.json({ keys: [TENANT_ISSUER_PUBLIC_JWK] });
    }) as typeof fetch;
    const verifier = createTokenVerifier({
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      jwksUrl: "https://issuer.test/.well-known/jwks.json",
      jwks: undefined,
      algorithms: ["RS256"],
      clockToleranceSeconds: 5,
      tenantClaim: "org.id",
      regionClaim: "region",
      adminSubjects: [],
      adminAudience: undefined,
    });
    const res = await verifier.verify(await tenantToken({ tenant: undefined, org: { id: "nested-tenant" } }));
    expect(res.ok && res.value.tenant).toBe("nested-tenant");
    const again = await verifier.verify(
      await tenantToken({ tenant: undefined, org: { id: "nested-tenant" } }),
    );
    expect(again.ok).toBe(true);
    expect(fetched).toEqual(["https://issuer.test/.well-known/jwks.json"]);
    const unknown = await verifier.verify(await tenantToken({ org: { id: "t" } }, { kid: "rotated-away" }));
    expect(unknown.ok || unknown.error.code).toBe("invalid_token");
  });
});
