import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpFiles } from "../../cluster-agent/exec/files.ts";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { verifiedBody } from "../../cluster-agent/http/streamed-body.ts";
import { createSandboxServer, type SandboxServer } from "../../cluster-agent/sandbox-server/app.ts";
import type { AppError } from "../../shared/errors.ts";
import {
  createRelaySigner,
  createRelayVerifier,
  digestToBase64url,
  type RelayClaims,
  relayAudience,
  STREAMED_BODY,
} from "../../shared/relay-signing.ts";
import { tempDir } from "../e2e/stack-helpers.ts";

// The agent's half of a streamed upload against a real exec server: the body streams into the
// server's temp file and the file appears only if the edge's trailer verifies (issue 24, item 2).

const tmp = tempDir("streamed-commit-");
const POOL_TOKEN = "pool-token-for-this-test-0123456789";
const target = { namespace: "ns", pod: "pod-1", podIP: "127.0.0.1", fence: 1 };
let server: SandboxServer;
let files: HttpFiles;

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const privateJwk = { ...(privateKey.export({ format: "jwk" }) as JWK), kid: "k1" };
const publicJwk = { ...(publicKey.export({ format: "jwk" }) as JWK), kid: "k1" };
const audience = relayAudience("eu-1");

beforeAll(async () => {
  server = createSandboxServer({
    poolToken: podExecToken(POOL_TOKEN, target.namespace, target.pod),
    listenHost: "127.0.0.1",
    port: 0,
    outputCapBytes: 1024 * 1024,
    workspace: tmp.dir,
    tmpDir: tmp.dir,
    processes: { maxRunning: 4, keepExited: 4, ringBytes: 4096, ringTotalBytes: 65536 },
  });
  await new Promise<void>((resolve) => server.server.listen(0, "127.0.0.1", resolve));
  const port = (server.server.address() as AddressInfo).port;
  files = new HttpFiles({ poolToken: POOL_TOKEN, port });
});

afterAll(async () => {
  await server?.shutdown();
  tmp.remove();
});

/** A head relay for a streamed PUT, verified as the agent's middleware does. */
async function head(): Promise<RelayClaims> {
  const signer = await createRelaySigner({ privateJwk, audience });
  const path = "/v1/sandboxes/x/files/f.bin";
  const token = await signer.sign({
    method: "PUT",
    path,
    body: STREAMED_BODY,
    tenant: "t",
    subject: "s",
    scopes: ["sandbox:exec"],
    requestId: "r",
  });
  const verifier = createRelayVerifier({ publicKeys: [publicJwk], audience });
  const v = await verifier.verify({ token, method: "PUT", path, body: STREAMED_BODY });
  if (!v.ok) throw v.error;
  return v.value;
}

function chunked(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.byteLength) return c.close();
      c.enqueue(bytes.subarray(at, at + 256 * 1024));
      at += 256 * 1024;
    },
  });
}

async function upload(name: string, sent: Uint8Array, signedFor: Uint8Array) {
  const claims = await head();
  const signer = await createRelaySigner({ privateJwk, audience });
  const trailer = signer.signTrailer({
    headJti: claims.jti,
    bodySha256: digestToBase64url(createHash("sha256").update(signedFor).digest()),
    size: signedFor.byteLength,
  });
  const verifier = createRelayVerifier({ publicKeys: [publicJwk], audience });
  let refused: AppError | null = null;
  const body = verifiedBody(chunked(sent), {
    limit: 64 * 1024 * 1024,
    trailer,
    verify: (t, passed) => verifier.verifyTrailer(t, claims, passed),
    onRefused: (e) => {
      refused = e;
    },
  });
  const result = await files.write(target, name, body, {
    signal: AbortSignal.timeout(60_000),
    maxBytes: 64 * 1024 * 1024,
  });
  return { result, refused: refused as AppError | null };
}

describe("a streamed upload commits only after its trailer verifies", () => {
  it("the signed body is written whole", async () => {
    const bytes = new Uint8Array(randomBytes(8 * 1024 * 1024));
    const { result, refused } = await upload("good.bin", bytes, bytes);
    expect(refused).toBeNull();
    expect(result.ok && result.value.size).toBe(bytes.byteLength);
    expect(readFileSync(`${tmp.dir}/good.bin`).equals(bytes)).toBe(true);
  }, 60_000);

  it("a body that differs from its trailer by one byte leaves no file, and no temp file", async () => {
    const signed = new Uint8Array(randomBytes(8 * 1024 * 1024));
    const tampered = signed.slice();
    tampered[5_000_000] = (tampered[5_000_000]! + 1) & 0xff;
    const { result, refused } = await upload("bad.bin", tampered, signed);
    expect(result.ok).toBe(false);
    expect(refused?.code).toBe("relay_signature_invalid");
    await expect.poll(() => readdirSync(tmp.dir).filter((n) => n.includes("bad.bin"))).toEqual([]);
  }, 60_000);
});
