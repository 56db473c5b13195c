import { env, SELF } from "cloudflare:test";
import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { PORT_LINK_RELAY_SCOPE, PORT_REQUEST_HEADERS_HEADER, type PortLink } from "../../shared/api.ts";
import {
  type PortLinkClaims,
  portLinkKey,
  signPortLink,
  unverifiedSandboxOf,
  verifyPortLink,
} from "../../shared/port-link-token.ts";
import { RELAY_HEADER, STREAMED_BODY } from "../../shared/relay-signing.ts";
import { RELAY_PRIVATE_JWKS } from "./fixtures/test-keys.ts";
import {
  auth,
  BASE,
  closeAgents,
  connectAgent,
  expectError,
  type TestAgent,
  tenantToken,
  waitForAgents,
} from "./support.ts";

// Port links at the edge, in workerd: the token (sign, verify, every way it must fail), the create
// route signing it into a `<link id>.<host>` URL, and a request to a link host relayed to the
// agent (played by the test) with only the link scope, the app's headers apart, and nothing of the
// edge's own (the tenant's JWT, the link token) passed on.

const TUNNEL = env.TUNNEL as unknown as DurableObjectNamespace;
const agents: TestAgent[] = [];
afterEach(() => closeAgents(agents, TUNNEL, ["eu-1"]));

const SID = "sb.eu-1.default.abcdefghij0123456789";
const LID = "pl-abcdefghij0123456789";
const now = () => Math.floor(Date.now() / 1000);
const claims = (over: Partial<PortLinkClaims> = {}): PortLinkClaims => ({
  lid: LID,
  sid: SID,
  tid: "t1",
  port: 8000,
  pub: true,
  exp: now() + 600,
  ...over,
});
const regionKey = () => portLinkKey(RELAY_PRIVATE_JWKS["eu-1"]!.d!);

describe("port link tokens", () => {
  it("verify with their region's key and give back exactly what was signed", async () => {
    const key = await regionKey();
    const token = await signPortLink(key, claims());
    expect(await verifyPortLink(key, token)).toEqual({ ok: true, value: claims({ exp: claims().exp }) });
    expect(unverifiedSandboxOf(token)).toBe(SID);
    // Deterministic: a listed link keeps its URL.
    expect(await signPortLink(key, claims())).toBe(token);
  });

  it("fail as link_not_found when forged, of another key, expired, retyped or malformed", async () => {
    const key = await regionKey();
    const token = await signPortLink(key, claims());
    const [h, p, s] = token.split(".");
    const otherPayload = btoa(JSON.stringify({ ...claims(), tid: "t2" }))
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    const otherKey = await portLinkKey(RELAY_PRIVATE_JWKS["us-1"]!.d!);
    const retyped = await new SignJWT({ ...claims() })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(key);
    const bad = [
      `${h}.${otherPayload}.${s}`,
      `${h}.${p}.${s?.startsWith("A") ? "B" : "A"}${s?.slice(1)}`,
      await signPortLink(otherKey, claims()),
      await signPortLink(key, claims({ exp: now() - 1 })),
      retyped,
      "x.y.z",
      "",
    ];
    for (const t of bad) {
      const r = await verifyPortLink(key, t);
      expect(r.ok ? "verified" : r.error.code).toBe("link_not_found");
    }
    // The same token later than its expiry.
    const r = await verifyPortLink(key, token, claims().exp + 1);
    expect(r.ok ? "verified" : r.error.code).toBe("link_not_found");
  });
});

/** An agent that records links and answers a link's request as the app would. */
async function linkAgent(): Promise<TestAgent> {
  const a = await connectAgent("eu-1", async (r, ag) => {
    const url = new URL(r.request.url);
    if (r.request.method === "POST" && url.pathname.endsWith("/ports/8000/links")) {
      await ag.respond(
        r.frame.id,
        Response.json(
          {
            id: LID,
            port: 8000,
            public: false,
            createdAt: "2026-12-07T00:00:00.000Z",
            expiresAt: "2099-01-01T00:00:00.000Z",
          },
          { status: 201 },
        ),
      );
      return;
    }
    await ag.respond(
      r.frame.id,
      new Response(`app says ${url.pathname}${url.search}`, {
        headers: { "content-type": "text/plain", "set-cookie": "s=1; Domain=edge.test; Path=/" },
      }),
    );
  });
  agents.push(a);
  await waitForAgents(TUNNEL, "eu-1", 1);
  return a;
}

describe("port links through the edge (agent played by the test)", () => {
  it("POST …/ports/:port/links answers the agent's link with a signed URL at <link id>.<host>", async () => {
    await linkAgent();
    const token = await tenantToken({ tenant: "t1", scope: "sandbox:exec" });
    const res = await SELF.fetch(`${BASE}/v1/sandboxes/${SID}/ports/8000/links`, {
      method: "POST",
      headers: auth(token, { "content-type": "application/json" }),
      body: "{}",
    });
    expect(res.status).toBe(201);
    const link = (await res.json()) as PortLink;
    const u = new URL(link.url);
    expect(u.host).toBe(`${LID}.edge.test`);
    const verified = await verifyPortLink(await regionKey(), u.searchParams.get("pi_link") ?? "");
    expect(verified.ok && verified.value).toMatchObject({
      lid: LID,
      sid: SID,
      tid: "t1",
      port: 8000,
      pub: false,
    });
  });

  it("ports outside 1-65535 are refused before anything is relayed", async () => {
    const token = await tenantToken({ tenant: "t1", scope: "sandbox:exec" });
    for (const port of ["0", "65536", "abc"]) {
      const res = await SELF.fetch(`${BASE}/v1/sandboxes/${SID}/ports/${port}/links`, {
        method: "POST",
        headers: auth(token, { "content-type": "application/json" }),
        body: "{}",
      });
      await expectError(res, 400, "port_not_allowed");
    }
  });

  it("a private link's request: relayed with the link scope only, the JWT and the token kept from the app", async () => {
    const a = await linkAgent();
    const link = await signPortLink(await regionKey(), claims({ pub: false }));
    const jwt = await tenantToken({ tenant: "t1", scope: "sandbox:exec" });
    const res = await SELF.fetch(`https://${LID}.edge.test/page?x=1&pi_link=${link}`, {
      headers: { authorization: `Bearer ${jwt}`, cookie: `pi_link=old; theme=dark`, "x-app": "1" },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(`app says /v1/sandboxes/${SID}/ports/8000/proxy/${LID}/page?x=1`);
    const cookies = res.headers.getSetCookie();
    expect(cookies).toContain("s=1; Path=/");
    expect(cookies.find((c) => c.startsWith("pi_link="))).toMatch(/; HttpOnly; SameSite=Lax; Secure$/);
    const got = a.received.at(-1)!;
    const verified = await a.verifier.verify({
      token: got.request.headers.get(RELAY_HEADER) ?? "",
      method: "GET",
      path: `/v1/sandboxes/${SID}/ports/8000/proxy/${LID}/page?x=1`,
      body: new Uint8Array(0),
    });
    expect(verified.ok && verified.value).toMatchObject({ tenant: "t1", scopes: [PORT_LINK_RELAY_SCOPE] });
    const app = JSON.parse(got.request.headers.get(PORT_REQUEST_HEADERS_HEADER) ?? "[]") as Array<
      [string, string]
    >;
    const names = app.map(([n]) => n);
    expect(names).not.toContain("authorization");
    expect(app).toContainEqual(["cookie", "theme=dark"]);
    expect(app).toContainEqual(["x-app", "1"]);
    expect(app).toContainEqual(["x-forwarded-host", `${LID}.edge.test`]);
    expect(JSON.stringify(app)).not.toContain(link);
  });

  it("a private link: no JWT → 401, another tenant's → 404; a public one needs none", async () => {
    await linkAgent();
    const key = await regionKey();
    const priv = await signPortLink(key, claims({ pub: false }));
    await expectError(await SELF.fetch(`https://${LID}.edge.test/?pi_link=${priv}`), 401, "unauthenticated");
    const other = await tenantToken({ tenant: "t2", scope: "sandbox:exec" });
    await expectError(
      await SELF.fetch(`https://${LID}.edge.test/`, { headers: { "x-pi-link": priv, ...auth(other) } }),
      404,
      "link_not_found",
    );
    const pub = await signPortLink(key, claims());
    const res = await SELF.fetch(`https://${LID}.edge.test/`, { headers: { cookie: `pi_link=${pub}` } });
    expect(res.status).toBe(200);
    // The app's query as sent: the token cut out, nothing re-encoded.
    const q = await SELF.fetch(`https://${LID}.edge.test/s?a=b%20c&pi_link=${pub}&d=+x&e`);
    expect(await q.text()).toBe(`app says /v1/sandboxes/${SID}/ports/8000/proxy/${LID}/s?a=b%20c&d=+x&e`);
  });

  it("a link host serves no API route, and a token on another link's host is 404", async () => {
    const jwt = await tenantToken({ tenant: "t1", scope: "sandbox:exec" });
    await expectError(
      await SELF.fetch(`https://${LID}.edge.test/v1/sandboxes`, { headers: auth(jwt) }),
      404,
      "link_not_found",
    );
    const token = await signPortLink(await regionKey(), claims());
    await expectError(
      await SELF.fetch(`https://pl-zzzzzzzzzz0123456789.edge.test/?pi_link=${token}`),
      404,
      "link_not_found",
    );
  });

  it("a link's request body streams to the agent, signed in its trailer", async () => {
    const a = await linkAgent();
    const token = await signPortLink(await regionKey(), claims());
    const body = new Uint8Array(300 * 1024).map((_, i) => i % 251);
    const res = await SELF.fetch(`https://${LID}.edge.test/upload`, {
      method: "POST",
      headers: { "x-pi-link": token, "content-type": "application/octet-stream" },
      body,
    });
    expect(res.status).toBe(200);
    const got = a.received.at(-1)!;
    expect(got.frame.bodyInTrailer).toBe(true);
    expect(got.body).toEqual(body);
    const verified = await a.verifier.verify({
      token: got.request.headers.get(RELAY_HEADER) ?? "",
      method: "POST",
      path: `/v1/sandboxes/${SID}/ports/8000/proxy/${LID}/upload`,
      body: STREAMED_BODY,
    });
    expect(verified.ok).toBe(true);
  });
});

describe("a WebSocket through a link (agent played by the test)", () => {
  it("is relayed as an upgrade with the link scope; the client's 101 carries the app's subprotocol", async () => {
    const a = await connectAgent("eu-1", async (r, ag) => {
      expect(r.frame.websocket).toBe(true);
      ag.acceptSession(r.frame.id, [["sec-websocket-protocol", "chat.v1"]]);
    });
    agents.push(a);
    await waitForAgents(TUNNEL, "eu-1", 1);
    const token = await signPortLink(await regionKey(), claims());
    const res = await SELF.fetch(`https://${LID}.edge.test/live?x=2&pi_link=${token}`, {
      headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": "chat.v1, other" },
    });
    expect(res.status).toBe(101);
    expect(res.headers.get("Sec-WebSocket-Protocol")).toBe("chat.v1");
    res.webSocket?.accept();
    const got = a.received.at(-1)!;
    expect(got.frame.path).toBe(`/v1/sandboxes/${SID}/ports/8000/proxy/${LID}/live?x=2`);
    const verified = await a.verifier.verify({
      token: got.request.headers.get(RELAY_HEADER) ?? "",
      method: "GET",
      path: got.frame.path,
      body: new Uint8Array(0),
    });
    expect(verified.ok && verified.value.scopes).toEqual([PORT_LINK_RELAY_SCOPE]);
    const app = JSON.parse(got.request.headers.get(PORT_REQUEST_HEADERS_HEADER) ?? "[]") as Array<
      [string, string]
    >;
    expect(app).toContainEqual(["sec-websocket-protocol", "chat.v1, other"]);
    res.webSocket?.close(1000, "done");
  });

  it("a forged token is 404 before anything reaches an agent: no socket opens", async () => {
    const a = await linkAgent();
    const before = a.received.length;
    const res = await SELF.fetch(`https://${LID}.edge.test/live`, {
      headers: { Upgrade: "websocket", "x-pi-link": "a.b.c" },
    });
    await expectError(res, 404, "link_not_found");
    expect(res.webSocket).toBeNull();
    expect(a.received.length).toBe(before);
  });
});
