import { base64url, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  generateSigningKeyPair,
  importPrivateSigningKey,
  type SigningKeyPair,
} from "../../shared/jwt-keys.ts";
import {
  bodySha256,
  createRelaySigner,
  createRelayVerifier,
  RELAY_HEADER,
  RELAY_ISSUER,
  RELAY_TOKEN_TYPE,
  type RelaySignInput,
  ReplayCache,
  relayAudience,
  STREAMED_BODY,
} from "../../shared/relay-signing.ts";

const AUD = relayAudience("eu-1");
const input: RelaySignInput = {
  method: "POST",
  path: "/v1/exec?x=1",
  body: '{"command":"echo hi"}',
  tenant: "acme",
  subject: "user-1",
  scopes: ["sandbox:exec"],
  requestId: "req-123",
};
const facts = (token: string, over: Partial<{ method: string; path: string; body: string }> = {}) => ({
  token,
  method: over.method ?? input.method,
  path: over.path ?? input.path,
  body: over.body ?? (input.body as string),
});

let keys: SigningKeyPair;
let other: SigningKeyPair;
beforeAll(async () => {
  keys = await generateSigningKeyPair("relay-1");
  other = await generateSigningKeyPair("relay-1"); // same kid, different key
});

const verifier = (over: Partial<Parameters<typeof createRelayVerifier>[0]> = {}) =>
  createRelayVerifier({ publicKeys: [keys.publicJwk], audience: AUD, ...over });

/** Craft a token with arbitrary header/payload, signed by `sign` (or unsigned). */
async function craft(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  sign?: (data: Uint8Array) => Promise<Uint8Array>,
): Promise<string> {
  const enc = new TextEncoder();
  const h = base64url.encode(JSON.stringify(header));
  const p = base64url.encode(JSON.stringify(payload));
  const sig = sign ? base64url.encode(await sign(enc.encode(`${h}.${p}`))) : "";
  return `${h}.${p}.${sig}`;
}

async function validPayload(over: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: RELAY_ISSUER,
    aud: AUD,
    sub: input.subject,
    iat: now,
    exp: now + 30,
    jti: "a-unique-jti-value-123456",
    htm: input.method,
    htp: input.path,
    bsh: await bodySha256(input.body),
    ten: input.tenant,
    scp: input.scopes,
    rid: input.requestId,
    ...over,
  };
}

async function signEd(privateJwk: SigningKeyPair["privateJwk"]) {
  const { key } = await importPrivateSigningKey(privateJwk);
  return async (data: Uint8Array) =>
    new Uint8Array(await crypto.subtle.sign("Ed25519", key, data as Uint8Array<ArrayBuffer>));
}

describe("relay signing", () => {
  it("round-trips and returns the claims bound to the request", async () => {
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const token = await signer.sign(input);
    const res = await verifier().verify(facts(token));
    expect(res.ok).toBe(true);
    if (!res.ok) return;
    expect(res.value).toMatchObject({
      method: "POST",
      path: "/v1/exec?x=1",
      tenant: "acme",
      subject: "user-1",
      scopes: ["sandbox:exec"],
      requestId: "req-123",
      iss: RELAY_ISSUER,
      aud: AUD,
    });
    expect(res.value.exp - res.value.iat).toBeLessThanOrEqual(30);
    expect(res.value.jti.length).toBeGreaterThanOrEqual(16);
  });

  it("verifies a Request via the X-Relay-Signature header and leaves its body readable", async () => {
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const token = await signer.sign(input);
    const req = new Request(`http://agent.local${input.path}`, {
      method: "POST",
      headers: { [RELAY_HEADER]: token },
      body: input.body as string,
    });
    const res = await verifier().verifyRequest(req);
    expect(res.ok).toBe(true);
    expect(await req.text()).toBe(input.body);
    const missing = await verifier().verifyRequest(new Request("http://agent.local/v1/exec"));
    expect(missing.ok || missing.error.code).toBe("relay_signature_invalid");
  });

  it("gives every token a fresh jti", async () => {
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const v = verifier();
    const a = await v.verify(facts(await signer.sign(input)));
    const b = await v.verify(facts(await signer.sign(input)));
    expect(a.ok && b.ok).toBe(true);
    if (a.ok && b.ok) expect(a.value.jti).not.toBe(b.value.jti);
  });

  const rejects = async (token: string, code: string, over: Parameters<typeof facts>[1] = {}) => {
    const res = await verifier().verify(facts(token, over));
    expect(res.ok).toBe(false);
    if (!res.ok) expect(res.error.code).toBe(code);
  };

  it("rejects a tampered body", async () => {
    const token = await (await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD })).sign(input);
    await rejects(token, "relay_signature_invalid", { body: '{"command":"rm -rf /"}' });
  });

  it("rejects a different path, query or method", async () => {
    const token = await (await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD })).sign(input);
    await rejects(token, "relay_signature_invalid", { path: "/v1/chat?x=1" });
    await rejects(token, "relay_signature_invalid", { path: "/v1/exec?x=2" });
    await rejects(token, "relay_signature_invalid", { method: "PUT" });
  });

  it("rejects a tampered payload (signature no longer matches)", async () => {
    const token = await (await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD })).sign(input);
    const [h, p, s] = token.split(".") as [string, string, string];
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
    claims.ten = "evil";
    await rejects(`${h}.${base64url.encode(JSON.stringify(claims))}.${s}`, "relay_signature_invalid");
  });

  it("rejects an expired token", async () => {
    let now = 1_800_000_000;
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD, now: () => now });
    const token = await signer.sign(input);
    const v = verifier({ now: () => now, clockToleranceSeconds: 5 });
    now += 36;
    const res = await v.verify(facts(token));
    expect(res.ok || res.error.code).toBe("relay_expired");
  });

  it("accepts within the clock tolerance and rejects a token issued in the future", async () => {
    let now = 1_800_000_000;
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD, now: () => now });
    const token = await signer.sign(input);
    now += 33; // exp was +30, tolerance 5
    const late = await verifier({ now: () => now }).verify(facts(token));
    expect(late.ok).toBe(true);
    now = 1_800_000_000 - 60;
    const early = await verifier({ now: () => now }).verify(facts(await signer.sign(input)));
    expect(early.ok).toBe(true); // signer clock moved too: same token time
    const futureToken = await craft(
      { alg: "EdDSA", typ: RELAY_TOKEN_TYPE, kid: keys.kid },
      await validPayload({ iat: now + 120, exp: now + 150 }),
      await signEd(keys.privateJwk),
    );
    const res = await verifier({ now: () => now }).verify(facts(futureToken));
    expect(res.ok).toBe(false);
  });

  it("rejects a replayed jti, and forgets it only after it could no longer verify", async () => {
    let now = 1_800_000_000;
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD, now: () => now });
    const cache = new ReplayCache({ nowMs: () => now * 1000 });
    const v = verifier({ now: () => now, replayCache: cache });
    const token = await signer.sign(input);
    expect((await v.verify(facts(token))).ok).toBe(true);
    const again = await v.verify(facts(token));
    expect(again.ok || again.error.code).toBe("relay_replayed");
    now += 34; // still inside exp + tolerance: still remembered
    const stillReplay = await v.verify(facts(token));
    expect(stillReplay.ok || stillReplay.error.code).toBe("relay_replayed");
    now += 2; // past exp + tolerance: token expired, entry evicted
    const expired = await v.verify(facts(token));
    expect(expired.ok || expired.error.code).toBe("relay_expired");
    expect(cache.size).toBe(1);
    cache.prune();
    expect(cache.size).toBe(0);
  });

  it("replay cache: bounded, evicts expired entries, fails closed with rate_limited when full", () => {
    let nowMs = 0;
    const cache = new ReplayCache({ maxEntries: 3, nowMs: () => nowMs });
    expect(cache.remember("a", 10_000).ok).toBe(true);
    expect(cache.remember("b", 20_000).ok).toBe(true);
    expect(cache.remember("c", 30_000).ok).toBe(true);
    const full = cache.remember("d", 30_000);
    expect(full.ok).toBe(false);
    if (!full.ok) {
      expect(full.error.code).toBe("rate_limited");
      expect(full.error.retryAfterSeconds).toBe(10);
    }
    expect(cache.size).toBe(3);
    nowMs = 10_000; // "a" expires
    expect(cache.remember("d", 40_000).ok).toBe(true);
    expect(cache.size).toBe(3);
    const replay = cache.remember("b", 50_000);
    expect(replay.ok || replay.error.code).toBe("relay_replayed");
  });

  it("only valid tokens consume replay-cache slots", async () => {
    const cache = new ReplayCache({ maxEntries: 1 });
    const v = verifier({ replayCache: cache });
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const bad = await v.verify(facts(await signer.sign(input), { body: "x" }));
    expect(bad.ok).toBe(false);
    expect(cache.size).toBe(0);
    expect((await v.verify(facts(await signer.sign(input)))).ok).toBe(true);
  });

  it("rejects a token signed with another key (same kid)", async () => {
    const token = await (await createRelaySigner({ privateJwk: other.privateJwk, audience: AUD })).sign(
      input,
    );
    await rejects(token, "relay_signature_invalid");
  });

  it("rejects alg: none", async () => {
    const token = await craft({ alg: "none", typ: RELAY_TOKEN_TYPE }, await validPayload());
    await rejects(token, "relay_signature_invalid");
    await rejects(token.slice(0, -1), "relay_signature_invalid");
  });

  it("rejects HS256 signed with the public key bytes as the HMAC secret (algorithm confusion)", async () => {
    const secrets = [
      base64url.decode(keys.publicJwk.x as string),
      new TextEncoder().encode(JSON.stringify(keys.publicJwk)),
    ];
    for (const secret of secrets) {
      const token = await new SignJWT(await validPayload({ jti: crypto.randomUUID() }))
        .setProtectedHeader({ alg: "HS256", typ: RELAY_TOKEN_TYPE, kid: keys.kid })
        .sign(secret);
      await rejects(token, "relay_signature_invalid");
    }
  });

  it("rejects a token whose exp is more than 30 s after iat, even if correctly signed", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await craft(
      { alg: "EdDSA", typ: RELAY_TOKEN_TYPE, kid: keys.kid },
      await validPayload({ iat: now, exp: now + 3600 }),
      await signEd(keys.privateJwk),
    );
    await rejects(token, "relay_signature_invalid");
    await expect(
      createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD, ttlSeconds: 60 }),
    ).rejects.toThrow(RangeError);
  });

  it("rejects tokens with a missing claim", async () => {
    for (const claim of [
      "iss",
      "aud",
      "sub",
      "iat",
      "exp",
      "jti",
      "htm",
      "htp",
      "bsh",
      "ten",
      "scp",
      "rid",
    ]) {
      const payload = await validPayload({ jti: `jti-${claim}-0123456789abcdef` });
      delete payload[claim];
      const token = await craft(
        { alg: "EdDSA", typ: RELAY_TOKEN_TYPE, kid: keys.kid },
        payload,
        await signEd(keys.privateJwk),
      );
      const res = await verifier().verify(facts(token));
      expect(res.ok, `without ${claim}`).toBe(false);
      if (!res.ok) expect(res.error.code).toBe("relay_signature_invalid");
    }
  });

  it("rejects the wrong audience, issuer or token type", async () => {
    const s = await createRelaySigner({ privateJwk: keys.privateJwk, audience: relayAudience("us-1") });
    await rejects(await s.sign(input), "relay_signature_invalid");
    const s2 = await createRelaySigner({
      privateJwk: keys.privateJwk,
      audience: AUD,
      issuer: "someone-else",
    });
    await rejects(await s2.sign(input), "relay_signature_invalid");
    const wrongTyp = await craft(
      { alg: "EdDSA", typ: "JWT", kid: keys.kid },
      await validPayload(),
      await signEd(keys.privateJwk),
    );
    await rejects(wrongTyp, "relay_signature_invalid");
    await rejects("not-a-jwt", "relay_signature_invalid");
  });

  it("accepts Ed25519 as the alg name too, and picks keys by kid across a rotation set", async () => {
    const next = await generateSigningKeyPair("relay-2");
    const v = createRelayVerifier({ publicKeys: { keys: [keys.publicJwk, next.publicJwk] }, audience: AUD });
    const t1 = await (await createRelaySigner({ privateJwk: next.privateJwk, audience: AUD })).sign(input);
    expect((await v.verify(facts(t1))).ok).toBe(true);
    const t2 = await craft(
      { alg: "Ed25519", typ: RELAY_TOKEN_TYPE, kid: keys.kid },
      await validPayload({ jti: "ed25519-alg-name-jti-0001" }),
      await signEd(keys.privateJwk),
    );
    expect((await v.verify(facts(t2))).ok).toBe(true);
  });
});

describe("streamed bodies: a head without the body, a trailer that binds it", () => {
  const streamedInput: RelaySignInput = {
    ...input,
    method: "PUT",
    path: "/v1/sandboxes/x/files/a",
    body: STREAMED_BODY,
  };
  const headFacts = (token: string, body: RelaySignInput["body"] = STREAMED_BODY) => ({
    token,
    method: "PUT",
    path: "/v1/sandboxes/x/files/a",
    body,
  });

  it("a streamed head verifies only as streamed, and a whole-body head never as streamed", async () => {
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const head = await verifier().verify(headFacts(await signer.sign(streamedInput)));
    expect(head.ok && head.value.bodySha256).toBeNull();
    // The same streamed head presented with any body (even empty) is refused.
    const asBody = await verifier().verify(headFacts(await signer.sign(streamedInput), ""));
    expect(asBody.ok || asBody.error.code).toBe("relay_signature_invalid");
    const whole = await signer.sign({ ...streamedInput, body: "" });
    const asStreamed = await verifier().verify(headFacts(whole));
    expect(asStreamed.ok || asStreamed.error.code).toBe("relay_signature_invalid");
  });

  it("the trailer must name this head's jti and exactly the bytes that passed, signed by the region's key", async () => {
    const signer = await createRelaySigner({ privateJwk: keys.privateJwk, audience: AUD });
    const v = verifier();
    const head = await v.verify(headFacts(await signer.sign(streamedInput)));
    if (!head.ok) throw head.error;
    const body = { sha256: await bodySha256("hello"), size: 5 };
    const trailer = await signer.signTrailer({ headJti: head.value.jti, bodySha256: body.sha256, size: 5 });
    expect((await v.verifyTrailer(trailer, head.value, body)).ok).toBe(true);
    const code = async (r: Promise<{ ok: boolean; error?: { code: string } }>) => {
      const x = await r;
      return x.ok ? "ok" : x.error?.code;
    };
    expect(await code(v.verifyTrailer(trailer, head.value, { ...body, size: 6 }))).toBe(
      "relay_signature_invalid",
    );
    expect(
      await code(v.verifyTrailer(trailer, head.value, { sha256: await bodySha256("hellO"), size: 5 })),
    ).toBe("relay_signature_invalid");
    expect(
      await code(v.verifyTrailer(trailer, { ...head.value, jti: "another-head-jti-0123456" }, body)),
    ).toBe("relay_signature_invalid");
    expect(await code(v.verifyTrailer(null, head.value, body))).toBe("relay_signature_invalid");
    const forger = await createRelaySigner({ privateJwk: other.privateJwk, audience: AUD });
    const forged = await forger.signTrailer({ headJti: head.value.jti, bodySha256: body.sha256, size: 5 });
    expect(await code(v.verifyTrailer(forged, head.value, body))).toBe("relay_signature_invalid");
    // A head token is not a trailer (typ differs), whatever it carries.
    const headAsTrailer = await signer.sign(streamedInput);
    expect(await code(v.verifyTrailer(headAsTrailer, head.value, body))).toBe("relay_signature_invalid");
  });
});
