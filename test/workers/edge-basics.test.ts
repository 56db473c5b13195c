import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auth, BASE, expectError, tenantToken } from "./support.ts";

describe("edge basics", () => {
  it("answers /healthz with a minted request id", async () => {
    const res = await SELF.fetch(`${BASE}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(res.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("never adopts a client's X-Request-Id; echoes it as X-Client-Request-Id", async () => {
    const res = await SELF.fetch(`${BASE}/healthz`, { headers: { "X-Request-Id": "client-chosen" } });
    expect(res.headers.get("X-Request-Id")).not.toBe("client-chosen");
    expect(res.headers.get("X-Client-Request-Id")).toBe("client-chosen");
    const a = (await SELF.fetch(`${BASE}/healthz`)).headers.get("X-Request-Id");
    const b = (await SELF.fetch(`${BASE}/healthz`)).headers.get("X-Request-Id");
    expect(a).not.toBe(b);
  });

  it("404 and 405 use the error envelope", async () => {
    await expectError(await SELF.fetch(`${BASE}/nope`), 404, "not_found");
    const res = await SELF.fetch(`${BASE}/v1/exec`, { method: "GET" });
    expect(res.headers.get("Allow")).toBe("POST");
    await expectError(res, 405, "method_not_allowed");
  });

  it("oversized body gives 413 (by Content-Length and when streamed)", async () => {
    const token = await tenantToken({ tenant: "t-413" });
    const big = "x".repeat(2 * 1024 * 1024 + 1);
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/json" }),
      body: big,
    });
    await expectError(res, 413, "payload_too_large");
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(64 * 1024));
        c.close();
      },
    });
    const res2 = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/json" }),
      body: stream,
    });
    await expectError(res2, 413, "payload_too_large");
  });

  it("bad input gives 400 / 415 with details", async () => {
    const token = await tenantToken({ tenant: "t-400" });
    const post = (body: string, type = "application/json") =>
      SELF.fetch(`${BASE}/v1/exec`, { method: "POST", headers: auth(token, { "Content-Type": type }), body });
    await expectError(await post("{nope"), 400, "invalid_json");
    await expectError(await post('{"command":""}'), 400, "invalid_request");
    await expectError(await post('{"command":"ls","extra":1}'), 400, "invalid_request");
    await expectError(await post("command=ls", "text/plain"), 415, "unsupported_media_type");
    // The unknown key is the cause: it comes first, with the known key it is closest to.
    const typo = await expectError(await post('{"comand":"ls"}'), 400, "invalid_request");
    expect(typo.message).toBe('comand: unknown field; did you mean "command"? (invalid exec request)');
    expect(typo.details?.[0]).toEqual({ path: "comand", message: 'unknown field; did you mean "command"?' });
    expect(typo.details).toContainEqual({ path: "command", message: "required (string)" });
    const other = await expectError(await post('{"command":"ls","timeout":5}'), 400, "invalid_request");
    expect(other.message).toMatch(/^timeout: unknown field; did you mean "timeoutSeconds"\?/);
    const far = await expectError(await post('{"command":"ls","zzzzzz":5}'), 400, "invalid_request");
    expect(far.message).toBe("zzzzzz: unknown field (invalid exec request)");
    // curl's default for -d: a real form body is not JSON.
    await expectError(await post("command=ls", "application/x-www-form-urlencoded"), 400, "invalid_json");
  });

  it("a JSON body sent with curl's default content type (-d without -H) is read as JSON", async () => {
    const token = await tenantToken({ tenant: "t-curl" });
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/x-www-form-urlencoded" }),
      body: '{"command":""}',
    });
    // Parsed as JSON and validated: the empty command is refused by the schema, not by the type.
    await expectError(res, 400, "invalid_request");
  });

  it("an invalid X-Sandbox-Region is refused", async () => {
    const token = await tenantToken({ tenant: "t-region" });
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/json", "X-Sandbox-Region": "mars-1" }),
      body: JSON.stringify({ command: "true" }),
    });
    await expectError(res, 400, "invalid_request");
  });

  it("no agent anywhere gives 503 no_agent with Retry-After", async () => {
    const token = await tenantToken({ tenant: "t-503" });
    const res = await SELF.fetch(`${BASE}/v1/exec`, {
      method: "POST",
      headers: auth(token, { "Content-Type": "application/json" }),
      body: JSON.stringify({ command: "true" }),
    });
    expect(res.headers.get("Retry-After")).toBe("5");
    await expectError(res, 503, "no_agent");
  });

  it("serves the dashboard page with a strict CSP", async () => {
    const res = await SELF.fetch(`${BASE}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(res.headers.get("X-Request-Id")).toBeTruthy();
    await res.body?.cancel();
  });

  it("describes the whole public API in /openapi.json", async () => {
    const res = await SELF.fetch(`${BASE}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe("3.1.0");
    for (const [path, method] of [
      ["/v1/exec", "post"],
      ["/v1/requests/{id}/cancel", "post"],
      ["/v1/chat", "post"],
      ["/chat", "post"],
      ["/v1/sessions/{id}", "get"],
      ["/v1/sessions/{id}", "delete"],
      ["/v1/pool", "get"],
      ["/v1/secrets", "get"],
      ["/v1/secrets/{name}", "put"],
      ["/v1/secrets/{name}", "delete"],
      ["/v1/events", "get"],
      ["/healthz", "get"],
      ["/openapi.json", "get"],
    ] as const) {
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    }
    const exec = doc.paths["/v1/exec"]!.post as {
      requestBody: { content: Record<string, { schema: { properties: object } }> };
    };
    expect(Object.keys(exec.requestBody.content["application/json"]!.schema.properties)).toContain("command");
    const chat = doc.paths["/v1/chat"]!.post as {
      requestBody: {
        content: Record<string, { schema: { properties: Record<string, { enum?: string[] }> } }>;
      };
    };
    expect(chat.requestBody.content["application/json"]!.schema.properties.sandbox?.enum).toEqual([
      "request",
      "session",
    ]);
  });
});
