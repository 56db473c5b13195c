import { APIConnectionError, APIError, APIUserAbortError } from "openai";
import { describe, expect, it } from "vitest";
import { readChatOptions, resolveChatOptions } from "../../cluster-agent/chat/chat-options.ts";
import { NO_API_KEY, readModelConfig } from "../../cluster-agent/chat/model-config.ts";
import {
  backoffMs,
  classifyModelError,
  DEFAULT_RETRY_POLICY,
  retryAfterMsOf,
} from "../../cluster-agent/chat/model-retry.ts";
import { parseRunInSandboxArgs, runInSandboxTool } from "../../cluster-agent/chat/run-in-sandbox-tool.ts";

describe("readModelConfig", () => {
  it("is model_not_configured with nothing set, naming every variable to set", () => {
    const r = readModelConfig({});
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("model_not_configured");
    expect(r.error.status).toBe(503);
    for (const v of ["OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"])
      expect(r.error.message).toContain(v);
  });

  it("needs a model name even when a server is given", () => {
    const r = readModelConfig({ OPENAI_BASE_URL: "http://127.0.0.1:1/v1", OPENAI_MODEL: "  " });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.message).toContain("OPENAI_MODEL");
      expect(r.error.message).not.toContain("OPENAI_API_KEY");
    }
  });

  it("needs a server or a key", () => {
    const r = readModelConfig({ OPENAI_MODEL: "m" });
    expect(!r.ok && r.error.message).toMatch(/OPENAI_BASE_URL.*OPENAI_API_KEY/);
  });

  it("accepts a keyless local server and a key alone", () => {
    expect(readModelConfig({ OPENAI_MODEL: "m", OPENAI_BASE_URL: "http://127.0.0.1:11434/v1" })).toEqual({
      ok: true,
      value: { model: "m", baseURL: "http://127.0.0.1:11434/v1", apiKey: NO_API_KEY },
    });
    expect(readModelConfig({ OPENAI_MODEL: "m", OPENAI_API_KEY: "sk-x" })).toEqual({
      ok: true,
      value: { model: "m", baseURL: undefined, apiKey: "sk-x" },
    });
  });

  it("refuses a base URL that is not http(s)", () => {
    const r = readModelConfig({ OPENAI_MODEL: "m", OPENAI_BASE_URL: "ftp://x" });
    expect(!r.ok && r.error.code).toBe("model_not_configured");
    const r2 = readModelConfig({ OPENAI_MODEL: "m", OPENAI_BASE_URL: "not a url" });
    expect(!r2.ok && r2.error.message).toContain("OPENAI_BASE_URL");
  });
});

describe("chat options", () => {
  it("defaults to 8 tool rounds and reads CHAT_MAX_TOOL_ROUNDS / CHAT_STREAM", () => {
    expect(resolveChatOptions().maxToolRounds).toBe(8);
    expect(readChatOptions({ CHAT_MAX_TOOL_ROUNDS: "3", CHAT_STREAM: "false" })).toEqual({
      ok: true,
      value: { maxToolRounds: 3, stream: false },
    });
    expect(readChatOptions({ CHAT_MAX_TOOL_ROUNDS: "x" }).ok).toBe(false);
    expect(resolveChatOptions({ retry: { maxAttempts: 2 } }).retry).toEqual({
      ...DEFAULT_RETRY_POLICY,
      maxAttempts: 2,
    });
  });
});

describe("run_in_sandbox arguments", () => {
  const limits = { defaultTimeoutSeconds: 30, maxTimeoutSeconds: 900 };

  it("offers command (required) and timeout_seconds", () => {
    const tool = runInSandboxTool(900);
    expect(tool.function.name).toBe("run_in_sandbox");
    expect(tool.function.parameters).toMatchObject({ required: ["command"] });
  });

  it("parses good arguments and applies the default timeout", () => {
    expect(parseRunInSandboxArgs('{"command":"ls"}', limits)).toEqual({
      ok: true,
      value: { command: "ls", timeoutSeconds: 30 },
    });
    expect(parseRunInSandboxArgs('{"command":"ls","timeout_seconds":5}', limits)).toEqual({
      ok: true,
      value: { command: "ls", timeoutSeconds: 5 },
    });
  });

  it.each([
    ['{"command": "ls"', /not valid JSON/],
    ["{}", /command is required/],
    ['{"command": 42}', /command must be a string/],
    ['{"command": "   "}', /must not be empty/],
    ['{"command":"ls","timeout_seconds":"10"}', /timeout_seconds must be a number/],
    ['{"command":"ls","timeout_seconds":0}', /at least 1/],
    ['{"command":"ls","timeout_seconds":901}', /at most 900/],
    ['{"command":"ls","timeout_seconds":1.5}', /integer/],
    ['["ls"]', /./],
  ])("refuses %s with a reason", (raw, why) => {
    const r = parseRunInSandboxArgs(raw, limits);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });
});

describe("model retry classification", () => {
  const live = new AbortController().signal;

  it("retries 408/409/429/5xx and connection failures, not other 4xx", () => {
    const h = new Headers({ "retry-after": "2" });
    expect(classifyModelError(APIError.generate(429, { message: "slow" }, undefined, h), live)).toMatchObject(
      {
        kind: "retryable",
        retryAfterMs: 2000,
      },
    );
    expect(classifyModelError(APIError.generate(503, undefined, "x", new Headers()), live).kind).toBe(
      "retryable",
    );
    expect(classifyModelError(new APIConnectionError({ message: "refused" }), live).kind).toBe("retryable");
    expect(classifyModelError(APIError.generate(401, undefined, "no", new Headers()), live).kind).toBe(
      "fatal",
    );
    expect(classifyModelError(APIError.generate(400, undefined, "bad", new Headers()), live).kind).toBe(
      "fatal",
    );
  });

  it("treats any failure as an abort once the caller aborted", () => {
    const c = new AbortController();
    c.abort();
    expect(classifyModelError(new APIUserAbortError(), c.signal).kind).toBe("aborted");
  });

  it("reads retry-after-ms, seconds and HTTP dates", () => {
    expect(retryAfterMsOf(new Headers({ "retry-after-ms": "150" }))).toBe(150);
    expect(retryAfterMsOf(new Headers({ "retry-after": "3" }))).toBe(3000);
    const date = new Date(Date.now() + 60_000).toUTCString();
    expect(retryAfterMsOf(new Headers({ "retry-after": date }))).toBeGreaterThan(50_000);
    expect(retryAfterMsOf(new Headers())).toBeUndefined();
  });

  it("backs off exponentially with jitter, capped", () => {
    const p = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffMs(1, { ...p, random: () => 0 })).toBe(50);
    expect(backoffMs(1, { ...p, random: () => 0.999999 })).toBe(100);
    expect(backoffMs(3, { ...p, random: () => 0.999999 })).toBe(400);
    expect(backoffMs(10, { ...p, random: () => 0.999999 })).toBe(1000);
  });
});
