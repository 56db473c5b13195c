/**
 * The public process API (shared/api.ts) and the exec server's wire contract
 * (sandbox-server/protocol.ts, which may import almost nothing outside its folder) declare the same
 * shapes; a drift in either fails type-checking here. (The signal list is one: shared/process-signals.ts.)
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import type {
  ProcessExitEvent as ServerExitEvent,
  ProcessOutputEvent as ServerOutputEvent,
  ProcessInfo as ServerProcessInfo,
  ProcessOutput as ServerProcessOutput,
  StdinResult as ServerStdinResult,
} from "../../cluster-agent/sandbox-server/protocol.ts";
import {
  type ProcessExitEvent,
  type ProcessInfo,
  ProcessInfoSchema,
  type ProcessOutput,
  type ProcessOutputEvent,
  ProcessStartRequestSchema,
  type StdinResult,
} from "../../shared/api.ts";

describe("process protocol", () => {
  it("the exec server's process shapes are shared/api.ts's", () => {
    expectTypeOf<ServerProcessInfo>().toEqualTypeOf<ProcessInfo>();
    expectTypeOf<ServerProcessOutput>().toEqualTypeOf<ProcessOutput>();
    expectTypeOf<ServerOutputEvent>().toEqualTypeOf<ProcessOutputEvent>();
    expectTypeOf<ServerExitEvent>().toEqualTypeOf<ProcessExitEvent>();
    expectTypeOf<ServerStdinResult>().toEqualTypeOf<StdinResult>();
    const info: ServerProcessInfo = {
      pid: 7,
      command: "sleep 1",
      argv: null,
      tty: false,
      cwd: "/workspace",
      startedAt: new Date(0).toISOString(),
      running: true,
      exitCode: null,
      signal: null,
      timedOut: false,
      endedAt: null,
      outputBytes: 0,
      outputStart: 0,
      ringBytes: 4096,
      stdinOpen: true,
    };
    expect(ProcessInfoSchema.parse(info)).toEqual(info);
  });

  it("a start request needs exactly one of command and argv, and cols/rows only with tty", () => {
    expect(ProcessStartRequestSchema.safeParse({ command: "cat" }).success).toBe(true);
    expect(ProcessStartRequestSchema.safeParse({ argv: ["cat"] }).success).toBe(true);
    expect(ProcessStartRequestSchema.safeParse({}).success).toBe(false);
    expect(ProcessStartRequestSchema.safeParse({ command: "cat", argv: ["cat"] }).success).toBe(false);
    expect(ProcessStartRequestSchema.safeParse({ command: "sh", cols: 100 }).success).toBe(false);
    expect(ProcessStartRequestSchema.safeParse({ command: "sh", tty: true, cols: 100 }).success).toBe(true);
    expect(ProcessStartRequestSchema.safeParse({ command: "sh", ringBytes: 4096 }).success).toBe(false);
  });
});
