import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  parseFrames,
  type SandboxServerHandle,
  sandboxClient,
  startSandboxServer,
  testImage,
} from "../support/sandbox-server.ts";

// The exec server as a plain child process (no PID namespace), WORKSPACE in a temp dir:
// request handling, auth, fencing, limits — and /reset refusing to touch the host.
describe("sandbox-server outside a sandbox", () => {
  let h: SandboxServerHandle;
  let call: ReturnType<typeof sandboxClient>;

  beforeAll(async () => {
    h = await startSandboxServer({ plain: true, token: "plain-token" });
    call = sandboxClient(h, 5);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("answers /health without auth", async () => {
    const res = await fetch(`${h.url}/health`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it("refuses a wrong or missing pool token with 401", async () => {
    for (const token of ["wrong", "plain-token-but-longer", ""]) {
      const r = await call("/exec", { body: { command: "true", timeoutMs: 1000 }, token });
      expect(r.status).toBe(401);
      expect(JSON.parse(r.text).error.code).toBe("unauthenticated");
    }
    const inspect = await call("/inspect", { token: "nope" });
    expect(inspect.status).toBe(401);
  });

  it("refuses a lower fencing token with 409, accepts equal and higher, and a higher one raises the mark", async () => {
    expect((await call("/exec", { body: { command: "true", timeoutMs: 1000 }, fence: 5 })).status).toBe(200);
    const stale = await call("/exec", { body: { command: "true", timeoutMs: 1000 }, fence: 4 });
    expect(stale.status).toBe(409);
    expect(JSON.parse(stale.text).error.code).toBe("stale_lease");
    expect((await call("/exec", { body: { command: "true", timeoutMs: 1000 }, fence: 7 })).status).toBe(200);
    expect((await call("/exec", { body: { command: "true", timeoutMs: 1000 }, fence: 5 })).status).toBe(409);
    expect((await call("/reset", { method: "POST", fence: 6 })).status).toBe(409);
    const inspect = await call("/inspect");
    expect(JSON.parse(inspect.text).fence).toBe(7);
    const missing = await call("/exec", { body: { command: "true", timeoutMs: 1000 }, fence: null });
    expect(missing.status).toBe(400);
    expect(JSON.parse(missing.text).error.message).toMatch(/X-Fence-Token/);
  });

  it("rejects non-JSON and schema-invalid bodies with 400 naming the field, and oversized ones with 413", async () => {
    const cases: Array<[unknown, RegExp]> = [
      ["{not json", /JSON/],
      [[1, 2], /body/],
      [{ timeoutMs: 1000 }, /^command/],
      [{ command: "", timeoutMs: 1000 }, /^command/],
      [{ command: "true" }, /^timeoutMs/],
      [{ command: "true", timeoutMs: 1.5 }, /^timeoutMs/],
      [{ command: "true", timeoutMs: 10_000_000 }, /^timeoutMs/],
      [{ command: "true", timeoutMs: 1000, stdin: 5 }, /^stdin/],
      [{ command: "true", timeoutMs: 1000, env: { "BAD-NAME": "x" } }, /^env\.BAD-NAME/],
      [{ command: "true", timeoutMs: 1000, env: { OK: 1 } }, /^env\.OK/],
      [{ command: "true", timeoutMs: 1000, extra: true }, /^extra/],
    ];
    for (const [body, reason] of cases) {
      const r = await call("/exec", {
        body: typeof body === "string" ? body : JSON.stringify(body),
        fence: 7,
      });
      expect(r.status, JSON.stringify(body)).toBe(400);
      const e = JSON.parse(r.text).error;
      expect(e.code).toBe("invalid_request");
      expect(e.message).toMatch(reason);
    }
    const big = JSON.stringify({ command: "true", timeoutMs: 1000, stdin: "x".repeat(2 * 1024 * 1024) });
    const r = await call("/exec", { body: big, fence: 7 });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text).error.code).toBe("payload_too_large");
  });

  it("refuses a cwd outside the workspace, also through a symlink, and runs in one below it", async () => {
    for (const cwd of ["/etc", `${h.workspace}/../`, `${h.workspace}x`, "relative/dir"]) {
      const r = await call("/exec", { body: { command: "pwd", timeoutMs: 1000, cwd }, fence: 7 });
      expect(r.status, cwd).toBe(400);
      expect(JSON.parse(r.text).error.message).toMatch(/^cwd/);
    }
    await mkdir(`${h.workspace}/sub`, { recursive: true });
    const ok = await call("/exec", {
      body: { command: "pwd", timeoutMs: 1000, cwd: `${h.workspace}/sub` },
      fence: 7,
    });
    expect(parseFrames(ok.text).stdout.toString()).toBe(`${h.workspace}/sub\n`);
    await writeFile(`${h.workspace}/notadir`, "x");
    const missing = await call("/exec", {
      body: { command: "pwd", timeoutMs: 1000, cwd: `${h.workspace}/nope` },
      fence: 7,
    });
    expect(missing.status).toBe(400);
  });

  it("gives the command a minimal environment without the pool token", async () => {
    const r = await call("/exec", {
      body: { command: "env", timeoutMs: 2000, env: { EXTRA: "yes" } },
      fence: 7,
    });
    const env = parseFrames(r.text).stdout.toString();
    expect(env).not.toContain("plain-token");
    expect(env).not.toContain("POOL_TOKEN");
    expect(env).toMatch(/^EXTRA=yes$/m);
    expect(env).toMatch(new RegExp(`^HOME=${h.workspace}$`, "m"));
    expect(env).toMatch(/^PATH=/m);
  });

  it("refuses /reset outside its own PID namespace and kills nothing", async () => {
    const bystander = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      await new Promise((r) => bystander.once("spawn", r));
      const r = await call("/reset", { method: "POST", fence: 7 });
      expect(r.status).toBe(403);
      expect(JSON.parse(r.text).error.code).toBe("reset_refused");
      await new Promise((r) => setTimeout(r, 100));
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
      expect(() => process.kill(bystander.pid ?? -1, 0)).not.toThrow();
    } finally {
      bystander.kill("SIGKILL");
    }
  });

  it("is bundled with no imports but Node built-ins, loaded by require (no ESM facades)", async () => {
    const bundle = await readFile(join(await testImage(), "server.mjs"), "utf8");
    // The one import: createRequire, for the built-ins (build.ts says why not import them).
    const imports = [...bundle.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    expect(imports).toEqual(["node:module"]);
    const required = [...bundle.matchAll(/\b__require\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required).toContain("node:http");
    expect(required.filter((s) => !s?.startsWith("node:"))).toEqual([]);
    // Nothing else is required by name: a package esbuild left unbundled would show up here.
    expect(bundle).not.toMatch(/\b(?<!__)require\("/);
  });

  it("exits 0 on SIGTERM", async () => {
    const other = await startSandboxServer({ plain: true });
    try {
      const exited = new Promise<number | null>((r) => other.child.once("exit", (code) => r(code)));
      other.child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      await other.close();
    }
  });
});
