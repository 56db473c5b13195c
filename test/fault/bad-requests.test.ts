import { Agent, request as httpRequestRaw, type IncomingHttpHeaders } from "node:http";
import { generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_STATUS, ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { exec, type FaultStack, leakCheck, outcome, recordCase, startFaultStack } from "./support.ts";

// Fault 6: 1,000 bad requests through the edge, 16 at a time. Every answer must be the documented
// error envelope with a stable code matching its status, carry X-Request-Id, come back promptly
// and never be a 500; afterwards a good request is served and no lease leaked.
const TOTAL = 1_000;
const CONCURRENCY = 16;
const MAX_BODY_BYTES = 128 * 1024;
let f: FaultStack;

beforeAll(async () => {
  f = await startFaultStack({
    poolSize: 2,
    agentsPerRegion: 2,
    leaseTtlSeconds: 5,
    // Quotas out of the way (the flood guard stays as configured: 6000/min > 1000), and a small
    // body limit so "huge" bodies stay cheap to send.
    edgeVars: {
      TENANT_QUOTA_BURST: "100000",
      TENANT_QUOTA_PER_MINUTE: "100000",
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
    },
  });
}, 90_000);
afterAll(async () => {
  await f?.close();
}, 60_000);

/** Deterministic PRNG (mulberry32) so a failure can be reproduced from the seed in the report. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface BadRequest {
  category: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array | string;
  /** Acceptable codes (each must map to the status it came with). */
  codes: string[];
}

const b64url = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");

async function buildTokens() {
  const iss = f.stack.issuer;
  const now = Math.floor(Date.now() / 1000);
  const foreign = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const foreignToken = await new SignJWT({ tenant: "tenant-a", scope: "sandbox:exec" })
    .setProtectedHeader({ alg: "EdDSA", kid: "dev-issuer-1", typ: "JWT" })
    .setIssuer(iss.issuer)
    .setAudience(iss.audience)
    .setSubject("mallory")
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(foreign.privateKey);
  const valid = f.stack.tokens.tenantA;
  const [h, p] = valid.split(".") as [string, string];
  const payload = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
  return {
    valid,
    expired: await iss.mint({
      tenant: "tenant-a",
      subject: "alice",
      scopes: ["sandbox:exec"],
      ttlSeconds: -600,
    }),
    algNone: `${b64url({ alg: "none", typ: "JWT" })}.${b64url(payload)}.`,
    unsigned: `${h}.${p}`,
    tamperedPayload: `${h}.${b64url({ ...payload, tenant: "tenant-b" })}.${valid.split(".")[2]}`,
    badSignature: `${h}.${p}.${Buffer.from("not the signature").toString("base64url")}`,
    foreignKey: foreignToken,
    wrongAudience: await new SignJWT({ ...payload, aud: "someone-else" })
      .setProtectedHeader({ alg: "EdDSA", kid: "x" })
      .sign(foreign.privateKey),
    hs256: await new SignJWT({ ...payload, exp: now + 3600 })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode("a shared secret nobody configured")),
    garbage: "definitely.not.a-jwt",
    chatOnly: await iss.mint({ tenant: "tenant-a", subject: "alice", scopes: ["sandbox:chat"] }),
  };
}

function deepNesting(depth: number, r: () => number): string {
  const open = r() < 0.5 ? "[" : '{"a":';
  const close = open === "[" ? "]" : "}";
  return open.repeat(depth) + (r() < 0.5 ? "1" : "") + close.repeat(depth);
}

function wrongTypeBody(r: () => number): string {
  const huge = "x".repeat(1_000 + Math.floor(r() * 100_000));
  const cases: unknown[] = [
    { command: 123 },
    { command: null },
    { command: ["echo", "hi"] },
    { command: { sh: "echo" } },
    { command: "" },
    { command: true },
    { command: "echo hi", timeoutSeconds: "5" },
    { command: "echo hi", timeoutSeconds: -1 },
    { command: "echo hi", timeoutSeconds: 0 },
    { command: "echo hi", timeoutSeconds: 1e12 },
    { command: "echo hi", timeoutSeconds: 1.5 },
    { command: "echo hi", stdin: 42 },
    { command: "echo hi", unexpected: huge },
    { command: 7, padding: huge },
    { command: "x".repeat(64 * 1024 + 1 + Math.floor(r() * 1000)) },
    { cmd: "echo hi" },
    {},
    [],
    "echo hi",
    42,
    null,
    { command: "echo hi", env: huge },
  ];
  return JSON.stringify(cases[Math.floor(r() * cases.length)]);
}

function randomBytes(r: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  // Never accidentally valid JSON: a random byte string starting with "{" and not closing.
  out[0] = 0x7b;
  out[n - 1] = 0x2c;
  return out;
}

function makeRequests(tokens: Awaited<ReturnType<typeof buildTokens>>, seed: number): BadRequest[] {
  const r = rng(seed);
  const json = { "content-type": "application/json" };
  const auth = (t: string) => ({ authorization: `Bearer ${t}` });
  const gens: Array<() => BadRequest> = [
    () => ({
      category: "fuzz: random bytes",
      method: "POST",
      path: "/v1/exec",
      headers: { ...json, ...auth(tokens.valid) },
      body: randomBytes(r, 1 + Math.floor(r() * 4096)),
      codes: ["invalid_json"],
    }),
    () => ({
      category: "fuzz: truncated JSON",
      method: "POST",
      path: r() < 0.5 ? "/v1/exec" : "/v1/chat",
      headers: { ...json, ...auth(tokens.valid) },
      body: '{"command": "echo hi", "timeoutSeconds": '.slice(0, 1 + Math.floor(r() * 40)),
      codes: ["invalid_json"],
    }),
    () => ({
      category: "fuzz: deep nesting",
      method: "POST",
      path: "/v1/exec",
      headers: { ...json, ...auth(tokens.valid) },
      body: deepNesting(1_000 + Math.floor(r() * 20_000), r),
      codes: ["invalid_json", "invalid_request"],
    }),
    () => ({
      category: "fuzz: wrong types / huge strings",
      method: "POST",
      path: "/v1/exec",
      headers: { ...json, ...auth(tokens.valid) },
      body: wrongTypeBody(r),
      codes: ["invalid_request"],
    }),
    () => ({
      category: "fuzz: bad chat body",
      method: "POST",
      path: r() < 0.5 ? "/v1/chat" : "/chat",
      headers: { ...json, ...auth(tokens.valid) },
      body: JSON.stringify(
        [
          { message: 5 },
          { message: "" },
          { sessionId: "s" },
          { message: "hi", sessionId: 7 },
          { message: "x".repeat(40_000) },
        ][Math.floor(r() * 5)],
      ),
      codes: ["invalid_request"],
    }),
    () => ({
      category: "huge body (> MAX_BODY_BYTES)",
      method: "POST",
      path: r() < 0.7 ? "/v1/exec" : "/v1/chat",
      headers: { ...json, ...auth(tokens.valid) },
      body: JSON.stringify({
        command: "echo",
        stdin: "y".repeat(MAX_BODY_BYTES + Math.floor(r() * 4 * MAX_BODY_BYTES)),
      }),
      codes: ["payload_too_large"],
    }),
    () => {
      const kinds = [
        ["none", undefined, ["unauthenticated"]],
        ["garbage", tokens.garbage, ["invalid_token", "unauthenticated"]],
        ["expired", tokens.expired, ["token_expired", "invalid_token"]],
        ["alg none", tokens.algNone, ["invalid_token"]],
        ["unsigned", tokens.unsigned, ["invalid_token"]],
        ["tampered payload", tokens.tamperedPayload, ["invalid_token"]],
        ["bad signature", tokens.badSignature, ["invalid_token"]],
        ["foreign key", tokens.foreignKey, ["invalid_token"]],
        ["wrong audience", tokens.wrongAudience, ["invalid_token"]],
        ["HS256", tokens.hs256, ["invalid_token"]],
        ["Basic scheme", "basic", ["unauthenticated", "invalid_token"]],
      ] as const;
      const [name, token, codes] = kinds[Math.floor(r() * kinds.length)] ?? kinds[0];
      const headers: Record<string, string> = { ...json };
      if (token === "basic") headers.authorization = "Basic YWxpY2U6c2VjcmV0";
      else if (token) headers.authorization = `Bearer ${token}`;
      const path =
        ["/v1/exec", "/v1/chat", "/v1/pool", "/v1/events", "/v1/sessions/abc"][Math.floor(r() * 5)] ??
        "/v1/exec";
      const get = path === "/v1/pool" || path === "/v1/events" || path.startsWith("/v1/sessions");
      return {
        category: `bad token: ${name}`,
        method: get ? "GET" : "POST",
        path,
        headers,
        ...(get ? {} : { body: JSON.stringify({ command: "echo should-not-run" }) }),
        codes: [...codes],
      };
    },
    () => {
      const admin = r() < 0.5;
      return {
        category: "missing scope",
        method: admin ? "GET" : "POST",
        path: admin ? "/v1/pool" : "/v1/exec",
        headers: { ...json, ...auth(admin ? tokens.valid : tokens.chatOnly) },
        ...(admin ? {} : { body: JSON.stringify({ command: "echo should-not-run" }) }),
        codes: ["insufficient_scope"],
      };
    },
    () => {
      const variants: Array<[string, string, string[]]> = [
        ["GET", "/v1/exec", ["method_not_allowed"]],
        ["PUT", "/v1/exec", ["method_not_allowed"]],
        ["DELETE", "/v1/pool", ["method_not_allowed"]],
        ["PATCH", "/v1/chat", ["method_not_allowed"]],
        ["POST", "/v1/pool", ["method_not_allowed"]],
        ["POST", "/healthz", ["method_not_allowed"]],
        ["GET", "/v2/exec", ["not_found"]],
        ["GET", "/v1/exec/extra", ["not_found"]],
        ["POST", "/v1/nope", ["not_found"]],
        ["GET", `/${"a".repeat(2_000 + Math.floor(r() * 4_000))}`, ["not_found"]],
        ["GET", "/v1/%2e%2e/%2e%2e/etc/passwd", ["not_found"]],
        ["GET", "/v1/sessions/..%2F..%2Fadmin", ["not_found", "invalid_request"]],
        ["GET", "/%ZZ", ["not_found", "invalid_request"]],
      ];
      const [method, path, codes] = variants[Math.floor(r() * variants.length)] ?? [
        "GET",
        "/x",
        ["not_found"],
      ];
      return {
        category: "wrong method/path",
        method,
        path,
        headers: { ...json, ...auth(tokens.valid) },
        ...(method === "GET" ? {} : { body: "{}" }),
        codes,
      };
    },
    () => ({
      category: "wrong content type",
      method: "POST",
      path: "/v1/exec",
      headers: {
        "content-type": r() < 0.5 ? "text/plain" : "application/x-www-form-urlencoded",
        ...auth(tokens.valid),
      },
      body: "command=echo+hi",
      codes: ["unsupported_media_type", "invalid_json", "invalid_request"],
    }),
  ];
  return Array.from({ length: TOTAL }, () => (gens[Math.floor(r() * gens.length)] ?? gens[0]!)());
}

interface Observation {
  category: string;
  method: string;
  path: string;
  status: number | null;
  code: string | null;
  ms: number;
  problem?: string;
}

/**
 * One request on its own connection (node:http, no keep-alive agent): workerd closes a connection
 * whose request body the Worker did not read, without `Connection: close` (see the keep-alive
 * case below), which would otherwise surface as a reset on an unrelated request that happened to
 * reuse the pooled socket.
 */
function httpRequest(
  req: BadRequest,
  timeoutMs: number,
): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  const url = new URL(req.path, f.stack.edgeUrl);
  return new Promise((resolve, reject) => {
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    const r = httpRequestRaw(
      {
        host: url.hostname,
        port: url.port,
        method: req.method,
        path: req.path,
        agent: false,
        headers: { ...req.headers, ...(body ? { "content-length": String(body.byteLength) } : {}) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    r.on("timeout", () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on("error", reject);
    r.end(body);
  });
}

async function send(req: BadRequest): Promise<Observation> {
  const t0 = performance.now();
  const base = { category: req.category, method: req.method, path: req.path.slice(0, 80) };
  try {
    const res = await httpRequest(req, 15_000);
    const text = res.text;
    const ms = Math.round(performance.now() - t0);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { ...base, status: res.status, code: null, ms, problem: `not JSON: ${text.slice(0, 120)}` };
    }
    const env = ErrorEnvelopeSchema.safeParse(parsed);
    if (!env.success)
      return {
        ...base,
        status: res.status,
        code: null,
        ms,
        problem: `not an envelope: ${text.slice(0, 120)}`,
      };
    const { code, requestId } = env.data.error;
    const header = res.headers["x-request-id"];
    const problems: string[] = [];
    if (res.status >= 500) problems.push("5xx");
    if (ERROR_STATUS[code] !== res.status)
      problems.push(`code ${code} is ${ERROR_STATUS[code]}, not ${res.status}`);
    if (!req.codes.includes(code)) problems.push(`code ${code} not in ${req.codes.join("|")}`);
    if (!header) problems.push("no X-Request-Id");
    else if (header !== requestId) problems.push("X-Request-Id differs from the body's requestId");
    return {
      ...base,
      status: res.status,
      code,
      ms,
      ...(problems.length ? { problem: problems.join("; ") } : {}),
    };
  } catch (e) {
    return {
      ...base,
      status: null,
      code: null,
      ms: Math.round(performance.now() - t0),
      problem: `transport: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
}

describe("fault: 1,000 bad requests through the edge", () => {
  it("every answer is a well-formed error envelope with a stable code, a 4xx, an X-Request-Id; the system still serves and nothing leaks", async () => {
    const seed = Number(process.env.FAULT_SEED ?? 20261122);
    const requests = makeRequests(await buildTokens(), seed);
    const results: Observation[] = new Array(requests.length);
    let next = 0;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (;;) {
          const i = next++;
          const req = requests[i];
          if (!req) return;
          results[i] = await send(req);
        }
      }),
    );
    const wallMs = Date.now() - t0;
    const good = await exec(f, "echo still-good", 10, 20_000);
    const leaks = await leakCheck(f);

    const byCategory: Record<string, Record<string, number>> = {};
    for (const o of results) {
      const c = (byCategory[o.category] ??= {});
      const key = `${o.status ?? "none"} ${o.code ?? "-"}`;
      c[key] = (c[key] ?? 0) + 1;
    }
    const problems = results.filter((o) => o.problem);
    const sorted = results.map((o) => o.ms).sort((a, b) => a - b);
    recordCase("6-bad-requests", {
      setup: {
        total: TOTAL,
        concurrency: CONCURRENCY,
        maxBodyBytes: MAX_BODY_BYTES,
        seed,
        poolSize: f.poolSize,
      },
      wallMs,
      latencyMs: {
        p50: sorted[Math.floor(sorted.length / 2)],
        p99: sorted[Math.floor(sorted.length * 0.99)],
        max: sorted.at(-1),
      },
      callerReceivedByCategory: byCategory,
      problems: problems.slice(0, 25),
      problemCount: problems.length,
      goodRequestAfterwards: outcome(good),
      leakCheck: leaks,
    });

    expect(results.filter(Boolean)).toHaveLength(TOTAL);
    expect(problems, JSON.stringify(problems.slice(0, 5))).toEqual([]);
    for (const o of results) {
      expect(o.status).toBeGreaterThanOrEqual(400);
      expect(o.status).toBeLessThan(500);
    }
    expect(good.status).toBe(200);
    expect(good.exitCode).toBe(0);
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 120_000);
});

describe("fault: a keep-alive client after a rejected request body (known issue of the local edge runtime)", () => {
  // workerd (Miniflare) closes a connection whose request body the Worker did not read, without
  // sending `Connection: close`; a keep-alive client that reuses the socket at once gets a reset on
  // its NEXT request. The rejected request itself gets its proper envelope. On Cloudflare the
  // client's connection ends at Cloudflare's front line, not at workerd, so this is a property of
  // the local runtime, not of the edge code; the edge could drain small unread bodies before
  // answering to hide it. `it.fails` documents the behaviour and flips when it changes.
  it.fails("the next request on the same keep-alive connection is served", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const url = new URL(f.stack.edgeUrl);
    const one = (method: string, path: string, body?: string) =>
      new Promise<string>((resolve) => {
        const r = httpRequestRaw(
          {
            host: url.hostname,
            port: url.port,
            method,
            path,
            agent,
            timeout: 10_000,
            headers: {
              "content-type": "application/json",
              ...(body ? { "content-length": String(Buffer.byteLength(body)) } : {}),
            },
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(String(res.statusCode)));
          },
        );
        r.on("timeout", () => r.destroy(new Error("timeout")));
        r.on("error", (e) => resolve(`error: ${e.message}`));
        r.end(body);
      });
    const outcomes: Record<string, number> = {};
    try {
      for (let i = 0; i < 20; i++) {
        const rejected = await one("POST", "/v1/exec", JSON.stringify({ command: "x".repeat(1_000) }));
        const next = await one("GET", "/healthz");
        const key = `${rejected} then ${next}`;
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      }
    } finally {
      agent.destroy();
    }
    recordCase("6b-keepalive-after-unread-body", {
      known:
        "workerd closes the connection after a response to an unread request body, without Connection: close",
      pairs: 20,
      outcomes,
    });
    expect(outcomes).toEqual({ "401 then 200": 20 });
  }, 60_000);
});
