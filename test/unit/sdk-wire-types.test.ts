import { describe, expect, it } from "vitest";
import type { z } from "zod";
import type * as Sdk from "../../sdk/typescript/src/types.ts";
import type * as Api from "../../shared/api.ts";
import type * as Errors from "../../shared/errors.ts";

// The TypeScript client writes the wire types out (its published .d.ts must not reach into shared/);
// these lines make the typecheck (`tsc --noEmit`, which covers test/) fail the moment a schema and
// the client's copy differ in either direction.

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Mutual assignability: zod's inferred object types carry optional keys as `?: T | undefined`. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const checks = {
  errorCode: true satisfies Equals<Sdk.ErrorCode, Errors.ErrorCode>,
  errorBody: true satisfies Same<Sdk.ErrorBody, Errors.ErrorBody>,
  execRequest: true satisfies Same<Sdk.ExecRequestInput, Api.ExecRequestInput>,
  execResult: true satisfies Same<Sdk.ExecResult, Api.ExecResult>,
  execStreamEvent: true satisfies Same<Sdk.ExecStreamEvent, Api.ExecStreamEvent>,
  sandboxCreate: true satisfies Same<Sdk.SandboxCreateRequestInput, Api.SandboxCreateRequestInput>,
  sandbox: true satisfies Same<Sdk.SandboxWire, Api.Sandbox>,
  fileEntry: true satisfies Same<Sdk.FileEntry, z.infer<typeof Api.FileEntrySchema>>,
  fileWrite: true satisfies Same<Sdk.FileWriteResult, Api.FileWriteResult>,
  toolCall: true satisfies Same<Sdk.ToolCallRecord, Api.ToolCallRecord>,
  chatResponse: true satisfies Same<Sdk.ChatResponse, Api.ChatResponse>,
  chatEvent: true satisfies Same<Sdk.ChatEvent, Api.ChatEvent>,
  podSnapshot: true satisfies Same<Sdk.PodSnapshot, Api.PodSnapshot>,
  sandboxSnapshot: true satisfies Same<Sdk.SandboxSnapshot, Api.SandboxSnapshot>,
  poolSnapshot: true satisfies Same<Sdk.PoolSnapshot, Api.PoolSnapshot>,
};

describe("the TypeScript client's wire types", () => {
  it("equal the shared zod schemas' types (checked by the typecheck; this names each pair)", () => {
    expect(Object.values(checks).every((v) => v)).toBe(true);
    expect(Object.keys(checks)).toHaveLength(15);
  });
});
