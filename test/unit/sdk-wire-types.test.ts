import { describe, expect, it } from "vitest";
import type * as Sdk from "../../sdk/typescript/src/types.ts";
import type * as Api from "../../shared/api.ts";
import type * as Errors from "../../shared/errors.ts";

// The TypeScript client writes the wire types out (its published .d.ts must not reach into shared/);
// these lines make the typecheck (`tsc --noEmit`, which covers test/) fail the moment a schema and
// the client's copy differ in either direction.

/** Exactly equal (an added optional field counts): mutual assignability would not notice one. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

const checks = {
  errorCode: true satisfies Equals<Sdk.ErrorCode, Errors.ErrorCode>,
  errorBody: true satisfies Equals<Sdk.ErrorBody, Errors.ErrorBody>,
  execRequest: true satisfies Equals<Sdk.ExecRequestInput, Api.ExecRequestInput>,
  execResult: true satisfies Equals<Sdk.ExecResult, Api.ExecResult>,
  execStreamEvent: true satisfies Equals<Sdk.ExecStreamEvent, Api.ExecStreamEvent>,
  sandboxCreate: true satisfies Equals<Sdk.SandboxCreateRequestInput, Api.SandboxCreateRequestInput>,
  sandbox: true satisfies Equals<Sdk.SandboxWire, Api.Sandbox>,
  secretPut: true satisfies Equals<Sdk.SecretPutRequest, Api.SecretPutRequest>,
  secretInfo: true satisfies Equals<Sdk.SecretInfo, Api.SecretInfo>,
  sandboxNetwork: true satisfies Equals<Sdk.SandboxNetwork, Api.SandboxNetwork>,
  fileEntry: true satisfies Equals<Sdk.FileEntry, Api.FileEntry>,
  fileWrite: true satisfies Equals<Sdk.FileWriteResult, Api.FileWriteResult>,
  toolCall: true satisfies Equals<Sdk.ToolCallRecord, Api.ToolCallRecord>,
  chatResponse: true satisfies Equals<Sdk.ChatResponse, Api.ChatResponse>,
  chatEvent: true satisfies Equals<Sdk.ChatEvent, Api.ChatEvent>,
  podSnapshot: true satisfies Equals<Sdk.PodSnapshot, Api.PodSnapshot>,
  sandboxSnapshot: true satisfies Equals<Sdk.SandboxSnapshot, Api.SandboxSnapshot>,
  poolSnapshot: true satisfies Equals<Sdk.PoolSnapshot, Api.PoolSnapshot>,
  processSnapshot: true satisfies Equals<Sdk.ProcessSnapshot, Api.ProcessSnapshot>,
  processStart: true satisfies Equals<Sdk.ProcessStartRequestInput, Api.ProcessStartRequestInput>,
  processInfo: true satisfies Equals<Sdk.ProcessInfo, Api.ProcessInfo>,
  processOutput: true satisfies Equals<Sdk.ProcessOutput, Api.ProcessOutput>,
  processOutputEvent: true satisfies Equals<Sdk.ProcessOutputEvent, Api.ProcessOutputEvent>,
  processExitEvent: true satisfies Equals<Sdk.ProcessExitEvent, Api.ProcessExitEvent>,
  stdinResult: true satisfies Equals<Sdk.StdinResult, Api.StdinResult>,
  portLinkCreate: true satisfies Equals<Sdk.PortLinkCreateRequestInput, Api.PortLinkCreateRequestInput>,
  portLink: true satisfies Equals<Sdk.PortLink, Api.PortLink>,
  processSignal: true satisfies Equals<Sdk.ProcessSignal, (typeof Api.PROCESS_SIGNALS)[number]>,
};

describe("the TypeScript client's wire types", () => {
  it("equal the shared zod schemas' types (checked by the typecheck; this names each pair)", () => {
    expect(Object.values(checks).every((v) => v)).toBe(true);
    expect(Object.keys(checks)).toHaveLength(28);
  });
});
