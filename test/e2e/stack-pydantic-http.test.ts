import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { ExecResultSchema, SandboxSchema } from "../../shared/api.ts";
import { ErrorEnvelopeSchema } from "../../shared/errors.ts";
import { CONTRACT_IMAGE, contractImage, contractPodTemplate } from "../support/pydantic-contract/image.ts";
import { edgeApi, runProcess, tempDir } from "./stack-helpers.ts";

// The whole stack (edge in workerd, tunnel, agent process, devcluster) with EXEC_MODE=pydantic-http:
// the pool's image is the FastAPI server written to pydantic-ai-backends' http contract. What a
// user of that image sees through the edge — /v1/exec, a sandbox's files (binary) and processes —
// and the Python client's pydantic-ai-backends-shaped SessionManager against it.

const PY_ROOT = fileURLToPath(new URL("../../sdk/python/", import.meta.url));
const tmp = tempDir("stack-pydantic-http-");
let stack: Stack;
const api = edgeApi(() => stack);

beforeAll(async () => {
  const [images, template] = await Promise.all([contractImage(), contractPodTemplate()]);
  stack = await startStack({
    dir: tmp.dir,
    agentsPerRegion: 1,
    poolSize: 2,
    execMode: "pydantic-http",
    images,
    agentEnv: { SANDBOX_IMAGE: CONTRACT_IMAGE, SANDBOX_POD_TEMPLATE: template },
  });
}, 600_000);

afterAll(async () => {
  await stack?.close();
  tmp.remove();
}, 60_000);

describe("EXEC_MODE=pydantic-http through the edge", () => {
  it("/v1/exec runs on the contract server: combined output, exit code", async () => {
    const res = await api("/v1/exec", {
      method: "POST",
      body: JSON.stringify({ command: "echo out; echo err >&2; exit 5" }),
    });
    expect(res.status).toBe(200);
    const r = ExecResultSchema.parse(await res.json());
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([5, "out\nerr\n", ""]);
  });

  it("a sandbox's files round-trip byte for byte; its processes answer 501 not_supported_in_contract_mode", async () => {
    const made = await api("/v1/sandboxes", { method: "POST", body: "{}" });
    expect(made.status).toBe(201);
    const sb = SandboxSchema.parse(await made.json());
    const bytes = new Uint8Array(randomBytes(100 * 1024));
    const put = await api(`/v1/sandboxes/${sb.id}/files/data/blob.bin`, {
      method: "PUT",
      body: bytes,
      headers: { "content-type": "application/octet-stream" },
    });
    expect(put.status).toBe(200);
    const check = await api(`/v1/sandboxes/${sb.id}/exec`, {
      method: "POST",
      body: JSON.stringify({ command: "head -c 30000 data/blob.bin > data/head.bin" }),
    });
    expect(check.status).toBe(200);
    await check.body?.cancel();
    const got = await api(`/v1/sandboxes/${sb.id}/files/data/head.bin`);
    expect(got.status).toBe(200);
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes.subarray(0, 30000));
    const proc = await api(`/v1/sandboxes/${sb.id}/processes`, {
      method: "POST",
      body: JSON.stringify({ command: "sleep 5" }),
    });
    expect([proc.status, ErrorEnvelopeSchema.parse(await proc.json()).error.code]).toEqual([
      501,
      "not_supported_in_contract_mode",
    ]);
    expect((await api(`/v1/sandboxes/${sb.id}`, { method: "DELETE" })).status).toBe(204);
  });

  it("the Python client's SessionManager (pydantic-ai-backends' shape) works against it", async () => {
    const script = `
import asyncio, os
from pi_sandbox import SandboxClient, SessionManager

async def main():
    manager = SessionManager(SandboxClient(os.environ["PI_SANDBOX_URL"], os.environ["PI_SANDBOX_TOKEN"]),
                             idle_timeout_seconds=600)
    sandbox = await manager.get_or_create("user-123")
    r = sandbox.execute("echo hello; echo oops >&2; exit 3")
    assert (r.output, r.exit_code, r.truncated) == ("hello\\noops\\n", 3, False), r
    blob = bytes(range(256)) * 4
    sandbox.write("notes/blob.bin", blob)
    assert sandbox.read("notes/blob.bin") == blob
    again = await manager.get_or_create("user-123")
    assert again.execute("wc -c < notes/blob.bin").output == "1024\\n"
    assert await manager.release("user-123")
    print("ok")

asyncio.run(main())
`;
    const r = await runProcess("python3", ["-c", script], {
      cwd: PY_ROOT,
      env: {
        PYTHONPATH: PY_ROOT,
        PYTHONDONTWRITEBYTECODE: "1",
        PI_SANDBOX_URL: stack.edgeUrl,
        PI_SANDBOX_TOKEN: stack.tokens.tenantA,
      },
      timeoutMs: 120_000,
    });
    expect([r.code, r.stdout.trim()], r.out).toEqual([0, "ok"]);
  }, 150_000);
});
