// The once-per-agent pids limit check (issue 25 item 4) on a fake executor and the in-memory store:
// which pod is read, what counts as unlimited, and that a failed read moves on to the next Ready pod.
// Against a real runc pod: test/integration/pool-pids-check.test.ts.
import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { ExecCall, ExecTarget, Executor } from "../../cluster-agent/exec/executor.ts";
import { PidsLimitCheck } from "../../cluster-agent/pids-check.ts";
import type { ExecOutcome } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { PoolEvent } from "../../shared/events.ts";
import { flush, MemoryPoolStore } from "../support/memory-pool-store.ts";

const outcome = (stdout: string): ExecOutcome => ({
  exitCode: 0,
  signal: null,
  stdout,
  stderr: "",
  stdoutBytes: stdout.length,
  stderrBytes: 0,
  truncated: false,
  timedOut: false,
  durationMs: 1,
});

/** `exec` replaces the scripted answers (a read that behaves otherwise, e.g. one that hangs). */
function setup(answers: Array<Result<ExecOutcome>>, exec?: Executor["exec"]) {
  const store = new MemoryPoolStore();
  const bus = new EventBus("agent-a");
  const events: PoolEvent[] = [];
  bus.on((e) => events.push(e));
  const calls: Array<{ target: ExecTarget; call: ExecCall }> = [];
  const executor: Executor = {
    mode: "http",
    exec: async (target, call) => {
      calls.push({ target, call });
      if (exec) return exec(target, call);
      return answers.shift() ?? err(new AppError("internal", "no answer scripted"));
    },
  };
  const warnings: string[] = [];
  const check = new PidsLimitCheck({
    executor,
    store,
    bus,
    log: { warn: (_o, msg) => void warnings.push(msg) },
    namespace: "ns",
  });
  const ready = async (name: string) => {
    store.addPod(name);
    bus.emit({ type: "pod.ready", pod: name, data: { podIP: "127.0.1.2" } });
    await flush();
  };
  return { check, events, calls, warnings, ready };
}

describe("PidsLimitCheck", () => {
  it("reads pids.max once, from the first Ready pod, under its Lease's fence; a limit is no warning", async () => {
    const { check, events, calls, warnings, ready } = setup([ok(outcome("1024\n"))]);
    await ready("p0");
    await ready("p1");
    expect(calls).toHaveLength(1);
    expect(calls[0]?.target).toMatchObject({ namespace: "ns", pod: "p0", fence: 0 });
    expect(calls[0]?.call.command).toMatch(/pids\.max/);
    expect(check.result).toMatchObject({ pidsMax: "1024", unlimited: false, pod: "p0" });
    expect(events.filter((e) => e.type === "pod.pids").map((e) => e.data)).toEqual([
      { pidsMax: "1024", unlimited: false },
    ]);
    expect(warnings).toEqual([]);
  });

  it('"max" is unlimited: one warn line naming podPidsLimit', async () => {
    const { check, warnings, ready } = setup([ok(outcome("max\n"))]);
    await ready("p0");
    expect(check.result?.unlimited).toBe(true);
    expect(warnings).toEqual([expect.stringMatching(/no process limit .*podPidsLimit/)]);
  });

  it("a failed read is logged and the next pod that turns Ready is tried", async () => {
    const { check, calls, warnings, ready } = setup([
      err(new AppError("stale_lease", "taken")),
      ok(outcome("max")),
    ]);
    await ready("p0");
    expect(check.result).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/pids\.max failed/)]);
    await ready("p1");
    expect(calls.map((c) => c.target.pod)).toEqual(["p0", "p1"]);
    expect(check.result).toMatchObject({ pidsMax: "max", pod: "p1" });
  });
});

describe("PidsLimitCheck stop", () => {
  it("aborts a read in flight and resolves only once it ended: no call outlives a stopped agent", async () => {
    let ended = false;
    // A read that answers only when its signal aborts (then, like the api executor, a moment later).
    const { check, warnings, ready } = setup(
      [],
      (_target, call) =>
        new Promise((resolve) => {
          call.signal.addEventListener("abort", () =>
            setTimeout(() => {
              ended = true;
              resolve(err(new AppError("request_cancelled", "aborted")));
            }, 20),
          );
        }),
    );
    await ready("p0");
    await check.stop();
    expect(ended).toBe(true);
    expect(warnings).toEqual([]);
    expect(check.result).toBeUndefined();
  });
});
