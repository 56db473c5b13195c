import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { exitStatusOf, shellJoin } from "../../sdk/typescript/src/cli.ts";
import { resolveTarget } from "../../sdk/typescript/src/cli-config.ts";
import { exitCodeOf } from "../../sdk/typescript/src/cli-messages.ts";
import { SandboxClient } from "../../sdk/typescript/src/client.ts";
import { retryAfterOf, SandboxApiError } from "../../sdk/typescript/src/errors.ts";
import { filePath } from "../../sdk/typescript/src/sandbox.ts";
import { isRetryable } from "../../sdk/typescript/src/transport.ts";

// The client's pure pieces, and its retry rules over a scripted fetch; everything that talks HTTP
// is tested against the stack (test/e2e/sdk-*).

const apiError = (code: string, status: number) => new SandboxApiError({ code, status, message: code });

describe("sdk: pure pieces", () => {
  it("file paths: /workspace prefix dropped, segments encoded, dot segments resolved, other absolute paths left for the server to refuse", () => {
    expect(filePath("/workspace/a b/c#d.txt")).toBe("a%20b/c%23d.txt");
    expect(filePath("/workspace")).toBe("");
    expect(filePath("rel/x")).toBe("rel/x");
    expect(filePath("/etc/passwd")).toBe("/etc/passwd");
    // Dot segments are resolved by the client: a URL cannot carry them to the server.
    expect(filePath("a/./b/../c")).toBe("a/c");
    expect(filePath("/workspace/../etc/passwd")).toBe("/etc/passwd");
    for (const p of ["..", "../x", "a/../../x", "/.."]) {
      expect(() => filePath(p), p).toThrow(expect.objectContaining({ code: "invalid_path", status: 0 }));
    }
  });

  it("only 429 and the 503s that mean nothing ran are retried", () => {
    expect(isRetryable(apiError("rate_limited", 429))).toBe(true);
    expect(isRetryable(apiError("sandbox_limit", 429))).toBe(true);
    expect(isRetryable(apiError("queue_timeout", 503))).toBe(true);
    expect(isRetryable(apiError("no_agent", 503))).toBe(true);
    expect(isRetryable(apiError("lease_lost", 503))).toBe(false);
    expect(isRetryable(apiError("model_not_configured", 503))).toBe(false);
    expect(isRetryable(apiError("agent_unavailable", 502))).toBe(false);
  });

  it("Retry-After: seconds or an HTTP date, else the body's retryAfterSeconds", () => {
    expect(retryAfterOf(new Headers({ "retry-after": "7" }))).toBe(7);
    const at = new Date(Date.now() + 5_000).toUTCString();
    expect(retryAfterOf(new Headers({ "retry-after": at }))).toBeGreaterThanOrEqual(4);
    expect(
      retryAfterOf(new Headers(), {
        code: "rate_limited",
        message: "",
        requestId: "r",
        retryAfterSeconds: 3,
      }),
    ).toBe(3);
    expect(retryAfterOf(new Headers())).toBeUndefined();
  });

  it("the CLI's exit status: the command's, 124 on timeout, 128+N on a signal", () => {
    expect(exitStatusOf({ exitCode: 3, signal: null, timedOut: false })).toBe(3);
    expect(exitStatusOf({ exitCode: null, signal: null, timedOut: true })).toBe(124);
    expect(exitStatusOf({ exitCode: null, signal: "SIGKILL", timedOut: false })).toBe(137);
    expect(exitCodeOf(apiError("sandbox_not_found", 404))).toBe(66);
    expect(exitCodeOf(apiError("queue_timeout", 503))).toBe(75);
    expect(exitCodeOf(apiError("network_error", 0))).toBe(69);
  });

  it("shellJoin keeps words: one argument is a shell command, several are quoted", () => {
    expect(shellJoin(["echo $HOME | wc"])).toBe("echo $HOME | wc");
    expect(shellJoin(["printf", "%s", "a b", "it's"])).toBe("printf %s 'a b' 'it'\\''s'");
  });

  it("target: flags, then env, each on its own; nothing configured is an error that says what to set", () => {
    expect(resolveTarget({ url: "http://u" }, { PI_SANDBOX_TOKEN: "t" }, "/", false)).toMatchObject({
      url: "http://u",
      token: "t",
    });
    const none = resolveTarget({}, {}, "/", false);
    expect("error" in none && none.error).toContain("PI_SANDBOX_URL");
  });

  it("target: a state file's token goes only to that file's URL, and the file's URL only gets its own token", () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-state-"));
    try {
      const state = join(dir, ".devstack", "state.json");
      mkdirSync(dirname(state));
      writeFileSync(
        state,
        JSON.stringify({ edgeUrl: "http://planted", tokens: { tenantA: "ta", admin: "adm" } }),
      );
      const nested = join(dir, "a", "b");
      mkdirSync(nested, { recursive: true });
      expect(resolveTarget({}, {}, nested, false)).toEqual({
        url: "http://planted",
        token: "ta",
        source: state,
      });
      expect(resolveTarget({}, {}, nested, true)).toMatchObject({ url: "http://planted", token: "adm" });
      // My token never goes to the state file's URL; its token never goes to my URL.
      const mine = resolveTarget({}, { PI_SANDBOX_TOKEN: "my-real-token" }, nested, false);
      expect(mine).toEqual({ error: expect.stringContaining("a token but no URL") });
      const myUrl = resolveTarget({ url: "https://edge.example" }, {}, nested, false);
      expect(myUrl).toEqual({ error: expect.stringContaining("a URL but no token") });
      writeFileSync(state, JSON.stringify({ tokens: { tenantA: "ta" } }));
      expect(resolveTarget({}, {}, nested, false)).toEqual({
        error: expect.stringContaining("names no edge URL"),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sdk: retries of calls that are not idempotent", () => {
  // A fake fetch stands in for the edge (no HTTP): it answers each call from a script and counts them.
  function scripted(answers: Record<string, Array<[number, unknown]>>) {
    const calls: string[] = [];
    const fetchImpl: typeof fetch = async (input, init) => {
      const url = new URL(String(input));
      const key = `${init?.method ?? "GET"} ${url.pathname}`;
      calls.push(key);
      const next = answers[key]?.shift();
      if (!next) throw new Error(`unexpected call ${key}`);
      const [status, body] = next;
      return new Response(JSON.stringify(body), {
        status,
        headers: { "content-type": "application/json", ...(status === 429 ? { "retry-after": "0" } : {}) },
      });
    };
    return { calls, fetchImpl };
  }
  const id = `sb.local.default.${"a".repeat(20)}`;
  const base = `/v1/sandboxes/${id}`;
  const sandboxBody = { id, state: "ready", region: "local", pod: "p", idleTimeoutSeconds: 60 };
  const procBody = { pid: 7, running: true, outputBytes: 0, stdinOpen: true };
  const refused = (code: string) => ({ error: { code, message: code } });

  it("a process start and a stdin write refused with 429 (not served) are sent again, once each", async () => {
    const { calls, fetchImpl } = scripted({
      [`GET ${base}`]: [[200, sandboxBody]],
      [`POST ${base}/processes`]: [
        [429, refused("rate_limited")],
        [201, procBody],
      ],
      [`POST ${base}/processes/7/stdin`]: [
        [429, refused("rate_limited")],
        [200, { written: 2, pending: 0, stdinOpen: true }],
      ],
    });
    const client = new SandboxClient({ baseUrl: "http://edge.test", token: "t", fetch: fetchImpl });
    const sb = await client.sandboxes.get(id);
    const p = await sb.processes.start({ argv: ["cat"] });
    expect(p.pid).toBe(7);
    expect(await p.write("hi")).toMatchObject({ written: 2 });
    expect(calls.filter((c) => c.endsWith("/processes"))).toHaveLength(2);
    expect(calls.filter((c) => c.endsWith("/stdin"))).toHaveLength(2);
  });

  it("a start answered 502 (it may have run) is not sent again", async () => {
    const { calls, fetchImpl } = scripted({
      [`GET ${base}`]: [[200, sandboxBody]],
      [`POST ${base}/processes`]: [[502, refused("agent_unavailable")]],
    });
    const client = new SandboxClient({ baseUrl: "http://edge.test", token: "t", fetch: fetchImpl });
    const sb = await client.sandboxes.get(id);
    await expect(sb.processes.start("sleep 1")).rejects.toMatchObject({
      code: "agent_unavailable",
      status: 502,
    });
    expect(calls.filter((c) => c.endsWith("/processes"))).toHaveLength(1);
  });
});
