import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ChatRequestSchema, ExecRequestSchema, SandboxCreateRequestSchema } from "../../shared/api.ts";
import { parseOrError } from "../../shared/errors.ts";
import { closestKey } from "../../shared/field-hints.ts";

const message = (schema: z.ZodType, input: unknown, what: string) => {
  const r = parseOrError(schema, input, what);
  if (r.ok) throw new Error("parsed");
  return r.error;
};

describe("validation errors name the offending field first", () => {
  it("an unknown key comes before the errors it causes, with the nearest known key", () => {
    const e = message(ExecRequestSchema, { comand: "ls" }, "exec request");
    expect(e.code).toBe("invalid_request");
    expect(e.message).toBe('comand: unknown field; did you mean "command"? (invalid exec request)');
    expect(e.details?.map((d) => d.path)).toEqual(["comand", "command"]);
  });

  it("a key that a known key starts with gets that hint (timeout → timeoutSeconds)", () => {
    expect(message(ExecRequestSchema, { command: "ls", timeout: 5 }, "exec request").message).toMatch(
      /^timeout: unknown field; did you mean "timeoutSeconds"\?/,
    );
    expect(message(SandboxCreateRequestSchema, { idleTimeout: 60 }, "sandbox request").message).toMatch(
      /^idleTimeout: unknown field; did you mean "idleTimeoutSeconds"\?/,
    );
  });

  it("no hint when nothing is near; a missing field says it is required", () => {
    expect(message(ExecRequestSchema, { command: "ls", qqqqqq: 1 }, "exec request").message).toBe(
      "qqqqqq: unknown field (invalid exec request)",
    );
    expect(message(ChatRequestSchema, {}, "chat request").message).toBe(
      "message: required (string) (invalid chat request)",
    );
  });

  it("nested objects are searched for their own keys", () => {
    const schema = z.strictObject({ outer: z.strictObject({ timeoutSeconds: z.number() }).optional() });
    const e = message(schema, { outer: { timeoutSecond: 1 } }, "thing");
    expect(e.message).toMatch(/^outer\.timeoutSecond: unknown field; did you mean "timeoutSeconds"\?/);
  });

  it("a root-level failure keeps the old shape", () => {
    expect(message(z.string(), 5, "session id").message).toBe(
      "invalid session id: Invalid input: expected string, received number",
    );
  });

  it("closestKey: spelling distance and prefixes, case ignored", () => {
    expect(closestKey("Command", ["command", "cwd"])).toBe("command");
    expect(closestKey("stdn", ["stdin", "env"])).toBe("stdin");
    expect(closestKey("x", ["command"])).toBeUndefined();
  });
});
