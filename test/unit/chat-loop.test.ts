/**
 * The chat loop (runChat) against the scripted OpenAI-compatible server over real HTTP with the
 * real `openai` client. The sandbox side uses small in-memory TEST DOUBLES of the SandboxLease and
 * Executor contracts (cluster-agent/exec/executor.ts), defined below; the chat module itself is never stubbed.
 * The same flows against the real lease manager + executor + devcluster are in
 * test/integration/chat-sandbox.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createChatHandler } from "../../cluster-agent/chat/chat-handler.ts";
import { readModelConfig } from "../../cluster-agent/chat/model-config.ts";
import type { ChatDeps } from "../../cluster-agent/chat/run-chat.ts";
import { runChat } from "../../cluster-agent/chat/run-chat.ts";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type {
  ExecCall as ChatExecCall,
  ExecTarget as ChatExecTarget,
  SandboxLease as ChatLease,
} from "../../cluster-agent/exec/executor.ts";
import {
  type ChatEvent,
  ChatEventSchema,
  type ExecOutcome,
  MODEL_CALLS_HEADER,
  type RelayChatRequest,
} from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import {
  type RecordedRequest,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";

// ---------- test doubles of the LeaseHandle / acquire / Executor interfaces ----------

/** Test double of a LeaseHandle: records releases; `lose()` fires `lost` like a failed renewal. */
class LeaseDouble implements ChatLease {
  readonly namespace = "pi-sandbox";
  readonly podIP = "127.0.1.9";
  readonly fence = 3;
  releases = 0;
  private readonly lostCtl = new AbortController();
  constructor(readonly pod: string) {}
  get lost() {
    return this.lostCtl.signal;
  }
  lose() {
    this.lostCtl.abort(new Error("renewal failed"));
  }
  async release() {
    this.releases++;
  }
}

/** Test double of the lease manager's acquire(): hands out one LeaseDouble per call, or a scripted error. */
class AcquireDouble {
  leases: LeaseDouble[] = [];
  constructor(private readonly failWith?: AppError) {}
  acquire = async (_signal: AbortSignal): Promise<Result<ChatLease>> => {
    if (this.failWith) return err(this.failWith);
    const lease = new LeaseDouble(`sandbox-${this.leases.length}`);
    this.leases.push(lease);
    return ok(lease);
  };
}

type ExecBehaviour = (call: ChatExecCall) => Promise<Result<ExecOutcome>> | Result<ExecOutcome>;

/** Test double of an Executor: records every call; by default "runs" a command by echoing it. */
class ExecutorDouble {
  readonly mode = "http" as const;
  calls: Array<{ target: ChatExecTarget; call: ChatExecCall; at: number }> = [];
  constructor(private readonly behaviour: ExecBehaviour = (c) => ok(outcome(`ran: ${c.command}\n`))) {}
  exec = async (target: ChatExecTarget, call: ChatExecCall): Promise<Result<ExecOutcome>> => {
    this.calls.push({ target, call, at: Date.now() });
    return this.behaviour(call);
  };
}

function outcome(stdout: string, extra: Partial<ExecOutcome> = {}): ExecOutcome {
  return {
    exitCode: 0,
    signal: null,
    timedOut: false,
    truncated: false,
    stdout,
    stderr: "",
    stdoutBytes: Buffer.byteLength(stdout),
    stderrBytes: 0,
    durationMs: 7,
    ...extra,
  };
}

// ---------- harness ----------

let server: ScriptedOpenAI | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const request = (message: string, history: RelayChatRequest["history"] = []): RelayChatRequest => ({
  message,
  sessionId: "s-1",
  history,
});

/** The run_in_sandbox description a model was sent. */
const runDescription = (req: RecordedRequest | undefined) =>
  (req?.body?.tools?.find((t) => t.function.name === "run_in_sandbox")?.function as { description?: string })
    ?.description;

async function chat(
  script: ScriptTurn[],
  opts: {
    message?: string;
    history?: RelayChatRequest["history"];
    acquire?: AcquireDouble;
    executor?: ExecutorDouble;
    options?: ChatDeps["options"];
    signal?: AbortSignal;
    onEvent?: (e: ChatEvent) => void;
    bus?: EventBus;
    network?: ChatDeps["network"];
  } = {},
) {
  server = await startScriptedOpenAI({ script, apiKey: "sk-test" });
  const acquire = opts.acquire ?? new AcquireDouble();
  const executor = opts.executor ?? new ExecutorDouble();
  const events: ChatEvent[] = [];
  const logged: Array<{ msg: string } & Record<string, unknown>> = [];
  const record = (obj: object, msg: string) => void logged.push({ msg, ...(obj as Record<string, unknown>) });
  const result = await runChat(
    request(opts.message ?? "hello", opts.history),
    {
      tenant: "tenant-1",
      requestId: "req-1",
      log: { info: record, warn: record },
      bus: opts.bus ?? new EventBus("agent-test"),
      model: { baseURL: server.baseURL, apiKey: "sk-test", model: "test-model" },
      acquire: acquire.acquire,
      executor,
      options: { retry: { baseDelayMs: 10, maxDelayMs: 50 }, ...opts.options },
      ...(opts.network ? { network: opts.network } : {}),
    },
    (e) => {
      expect(ChatEventSchema.safeParse(e).success).toBe(true);
      events.push(e);
      opts.onEvent?.(e);
    },
    opts.signal ?? new AbortController().signal,
  );
  return { result, events, logged, acquire, executor, server: server as ScriptedOpenAI };
}

const types = (events: ChatEvent[]) => events.map((e) => e.type);
const withoutDeltas = (events: ChatEvent[]) => types(events).filter((t) => t !== "assistant.delta");
const deltaText = (events: ChatEvent[]) =>
  events.flatMap((e) => (e.type === "assistant.delta" ? [e.text] : [])).join("");
const toolCall = (command: string, id?: string) => ({ id, arguments: { command } });

// ---------- tests ----------

describe("runChat with the scripted server", () => {
  it("answers a text-only turn without touching the sandbox, streaming deltas", async () => {
    const { result, events, acquire, server } = await chat(
      [{ type: "text", text: "Hello there, no tools needed." }],
      {
        message: "hi",
        history: [
          { role: "user", content: "earlier question" },
          { role: "assistant", content: "earlier answer" },
        ],
      },
    );
    expect(result).toEqual({
      ok: true,
      value: {
        requestId: "req-1",
        sessionId: "s-1",
        reply: "Hello there, no tools needed.",
        toolCalls: [],
        modelCalls: 1,
      },
    });
    expect(types(events).filter((t) => t === "assistant.delta").length).toBeGreaterThan(1);
    expect(deltaText(events)).toBe("Hello there, no tools needed.");
    expect(withoutDeltas(events)).toEqual(["assistant.message", "done"]);
    expect(acquire.leases).toHaveLength(0);

    const [sent] = server.completions();
    expect(sent?.headers.authorization).toBe("Bearer sk-test");
    expect(sent?.stream).toBe(true);
    expect(sent?.body?.model).toBe("test-model");
    expect(sent?.body?.messages.map((m) => [m.role, m.content])).toEqual([
      ["system", expect.stringContaining("/workspace")],
      ["user", "earlier question"],
      ["assistant", "earlier answer"],
      ["user", "hi"],
    ]);
    expect(sent?.body?.tools?.map((t) => t.function.name)).toEqual(["run_in_sandbox", "get_network"]);
  });

  it("tells the model its network (prompt, run_in_sandbox, get_network) without taking a pod", async () => {
    let view = { allow: ["pypi.org", "*.pythonhosted.org"], deny: ["evil.pypi.org"], secrets: ["API_KEY"] };
    const { result, acquire, server } = await chat(
      [
        { type: "tool_calls", calls: [{ id: "n1", name: "get_network", arguments: {} }] },
        { type: "tool_calls", calls: [{ id: "n2", name: "get_network", arguments: {} }] },
        { type: "text", text: "done" },
      ],
      { network: () => view },
    );
    expect(result.ok).toBe(true);
    const [first, second] = server.completions();
    const prompt = String(first?.body?.messages[0]?.content);
    expect(prompt).toContain("only these destinations are reachable");
    expect(prompt).toContain("pypi.org, *.pythonhosted.org");
    expect(prompt).toContain("Refused even so: evil.pypi.org");
    expect(prompt).toContain("$API_KEY hold placeholders");
    expect(prompt).toContain("You cannot change this policy");
    expect(prompt).not.toContain("There is no network access");
    expect(runDescription(first)).toContain("reaches only pypi.org, *.pythonhosted.org");
    const answer = second?.body?.messages.find((m) => m.role === "tool");
    expect(String(answer?.content)).toContain("pypi.org, *.pythonhosted.org");
    // Reading the policy needs no pod.
    expect(acquire.leases).toHaveLength(0);
    view = { allow: [], deny: [], secrets: [] };
    const again = await chat([{ type: "text", text: "ok" }], { network: () => view });
    expect(String(again.server.completions()[0]?.body?.messages[0]?.content)).toContain(
      "There is no network access",
    );
    expect(runDescription(again.server.completions()[0])).toContain("There is no network.");
  });

  it("runs one tool round on a leased pod, in the documented event order", async () => {
    const { result, events, acquire, executor, server } = await chat(
      [
        { type: "tool_calls", calls: [{ id: "call_a", arguments: { command: "pwd", timeout_seconds: 5 } }] },
        { type: "text", text: "You are in /workspace." },
      ],
      { message: "where am I?" },
    );
    expect(result.ok).toBe(true);
    expect(withoutDeltas(events)).toEqual([
      "sandbox.waiting",
      "sandbox.acquired",
      "tool.call",
      "tool.result",
      "assistant.message",
      "sandbox.released",
      "done",
    ]);
    expect(events).toContainEqual({ type: "sandbox.acquired", pod: "sandbox-0" });
    expect(events).toContainEqual({ type: "tool.call", id: "call_a", command: "pwd" });
    expect(events).toContainEqual({
      type: "tool.result",
      id: "call_a",
      exitCode: 0,
      durationMs: 7,
      truncated: false,
      timedOut: false,
    });
    expect(events).toContainEqual({ type: "sandbox.released", pod: "sandbox-0" });
    // every delta of the final answer comes after the tool result
    expect(types(events).lastIndexOf("assistant.delta")).toBeGreaterThan(
      types(events).indexOf("tool.result"),
    );
    expect(result.ok && result.value.toolCalls).toEqual([
      { id: "call_a", command: "pwd", exitCode: 0, durationMs: 7, truncated: false, timedOut: false },
    ]);

    expect(acquire.leases).toHaveLength(1);
    expect(acquire.leases[0]?.releases).toBe(1);
    expect(
      executor.calls.map((c) => [c.target.pod, c.target.fence, c.call.command, c.call.timeoutMs]),
    ).toEqual([["sandbox-0", 3, "pwd", 5000]]);

    // The second model call carries the assistant's tool call and our answer to it.
    const second = server.completions()[1]?.body?.messages ?? [];
    const assistant = second.at(-2);
    expect(assistant?.role).toBe("assistant");
    expect(assistant?.tool_calls?.[0]).toMatchObject({ id: "call_a", function: { name: "run_in_sandbox" } });
    expect(JSON.parse(assistant?.tool_calls?.[0]?.function.arguments ?? "")).toEqual({
      command: "pwd",
      timeout_seconds: 5,
    });
    expect(second.at(-1)).toMatchObject({ role: "tool", tool_call_id: "call_a" });
    expect(second.at(-1)?.content).toContain("exit_code: 0");
    expect(second.at(-1)?.content).toContain("ran: pwd");
  });

  it("runs parallel tool calls of one turn in order on the one pod and answers each id", async () => {
    const { result, events, acquire, executor, server } = await chat([
      {
        type: "tool_calls",
        text: "Let me look.",
        calls: [toolCall("echo one", "c1"), toolCall("echo two", "c2"), toolCall("echo three", "c3")],
      },
      { type: "text", text: "Done." },
    ]);
    expect(result.ok).toBe(true);
    expect(acquire.leases).toHaveLength(1);
    expect(executor.calls.map((c) => c.call.command)).toEqual(["echo one", "echo two", "echo three"]);
    expect(new Set(executor.calls.map((c) => c.target.pod))).toEqual(new Set(["sandbox-0"]));
    expect(
      events.flatMap((e) =>
        e.type === "tool.call" || e.type === "tool.result" ? [`${e.type}:${e.id}`] : [],
      ),
    ).toEqual([
      "tool.call:c1",
      "tool.result:c1",
      "tool.call:c2",
      "tool.result:c2",
      "tool.call:c3",
      "tool.result:c3",
    ]);
    expect(result.ok && result.value.toolCalls.map((t) => t.id)).toEqual(["c1", "c2", "c3"]);
    const sent = server.completions()[1]?.body?.messages ?? [];
    const tools = sent.filter((m) => m.role === "tool");
    expect(tools.map((m) => m.tool_call_id)).toEqual(["c1", "c2", "c3"]);
    expect(
      tools.map((m) => m.content?.includes(`ran: echo ${["one", "two", "three"][tools.indexOf(m)]}`)),
    ).toEqual([true, true, true]);
    expect(sent.find((m) => m.role === "assistant")?.content).toBe("Let me look.");
    // text that came with the tool calls was streamed too; the reply is the final turn's text
    expect(deltaText(events)).toBe("Let me look.Done.");
    expect(result.ok && result.value.reply).toBe("Done.");
  });

  it("answers malformed tool arguments as tool errors and keeps going", async () => {
    const { result, executor, server, events } = await chat([
      {
        type: "tool_calls",
        calls: [
          { id: "bad_json", arguments: '{"command": "ls' },
          { id: "no_command", arguments: { cmd: "ls" } },
          { id: "wrong_type", arguments: { command: ["ls"] } },
          { id: "bad_timeout", arguments: { command: "ls", timeout_seconds: 100000 } },
          { id: "other_tool", name: "delete_everything", arguments: { command: "ls" } },
          { id: "good", arguments: { command: "echo fine" } },
        ],
      },
      { type: "tool_calls", calls: [{ id: "fixed", arguments: { command: "ls" } }] },
      { type: "text", text: "Recovered." },
    ]);
    expect(result.ok && result.value.reply).toBe("Recovered.");
    expect(executor.calls.map((c) => c.call.command)).toEqual(["echo fine", "ls"]);
    const answers = Object.fromEntries(
      (server.completions()[1]?.body?.messages ?? [])
        .filter((m) => m.role === "tool")
        .map((m) => [m.tool_call_id, m.content ?? ""]),
    );
    expect(Object.keys(answers)).toEqual([
      "bad_json",
      "no_command",
      "wrong_type",
      "bad_timeout",
      "other_tool",
      "good",
    ]);
    expect(answers.bad_json).toMatch(
      /^error: invalid arguments for run_in_sandbox: the arguments are not valid JSON/,
    );
    expect(answers.no_command).toContain("command is required");
    expect(answers.wrong_type).toContain("command must be a string");
    expect(answers.bad_timeout).toContain("timeout_seconds must be at most 900");
    expect(answers.other_tool).toContain('no tool named "delete_everything"');
    for (const id of ["bad_json", "no_command", "wrong_type", "bad_timeout", "other_tool"]) {
      expect(answers[id]).toContain("Nothing was run");
    }
    expect(answers.good).toContain("ran: echo fine");
    // nothing ran for the bad calls, so they have no tool events or records
    expect(events.filter((e) => e.type === "tool.call").map((e) => e.type === "tool.call" && e.id)).toEqual([
      "good",
      "fixed",
    ]);
    expect(result.ok && result.value.toolCalls.map((t) => t.id)).toEqual(["good", "fixed"]);
  });

  it("stops at the tool-round limit with a notice and does not run the extra calls", async () => {
    const { result, executor, server, events } = await chat(
      [
        { type: "tool_calls", calls: [toolCall("echo 1")] },
        { type: "tool_calls", calls: [toolCall("echo 2")] },
        { type: "tool_calls", text: "One more thing.", calls: [toolCall("echo 3")] },
        { type: "text", text: "never reached" },
      ],
      { options: { maxToolRounds: 2 } },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(executor.calls.map((c) => c.call.command)).toEqual(["echo 1", "echo 2"]);
    expect(server.completions()).toHaveLength(3);
    expect(server.remaining()).toBe(1);
    expect(result.value.reply).toMatch(/^One more thing\.\n\n\[Stopped: .*limit of 2 tool rounds/);
    expect(result.value.toolCalls).toHaveLength(2);
    expect(events.find((e) => e.type === "assistant.message")).toEqual({
      type: "assistant.message",
      text: result.value.reply,
    });
    expect(withoutDeltas(events).slice(-3)).toEqual(["assistant.message", "sandbox.released", "done"]);
  });

  it("defaults to 8 tool rounds", async () => {
    const script: ScriptTurn[] = Array.from({ length: 9 }, (_, i) => ({
      type: "tool_calls" as const,
      calls: [toolCall(`echo ${i}`)],
    }));
    const { result, executor } = await chat(script);
    expect(executor.calls).toHaveLength(8);
    expect(result.ok && result.value.reply).toContain("limit of 8 tool rounds");
  });

  it("works with a server that does not stream", async () => {
    const { result, events, server } = await chat(
      [
        { type: "tool_calls", calls: [toolCall("ls", "c1"), toolCall("pwd", "c2")] },
        { type: "text", text: "Fine." },
      ],
      { options: { stream: false } },
    );
    expect(server.completions().map((r) => r.stream)).toEqual([false, false]);
    expect(result.ok && result.value.toolCalls.map((t) => t.command)).toEqual(["ls", "pwd"]);
    expect(deltaText(events)).toBe("Fine.");
  });

  it("shortens long output for the model, with the true size, and flags it", async () => {
    const big = `${"H".repeat(5000)}${"T".repeat(5000)}`;
    const executor = new ExecutorDouble(() => ok(outcome(big, { stdoutBytes: 3_000_000, truncated: true })));
    const { result, server } = await chat(
      [
        { type: "tool_calls", calls: [toolCall("cat big")] },
        { type: "text", text: "ok" },
      ],
      { executor, options: { toolOutputHeadBytes: 100, toolOutputTailBytes: 50 } },
    );
    const toolMsg = server.completions()[1]?.body?.messages.at(-1)?.content ?? "";
    expect(toolMsg).toContain(
      `stdout:\n${"H".repeat(100)}\n[output truncated: the command wrote 3000000 bytes`,
    );
    expect(toolMsg).toContain(`]\n${"T".repeat(50)}\nstderr`);
    expect(toolMsg.length).toBeLessThan(1000);
    expect(result.ok && result.value.toolCalls[0]?.truncated).toBe(true);
  });

  it("keeps requests apart: two concurrent chats each get their own history and lease", async () => {
    server = await startScriptedOpenAI({
      respond: (req) => {
        const last = req.body?.messages.at(-1);
        const user = req.body?.messages.filter((m) => m.role === "user").at(-1)?.content ?? "";
        if (last?.role === "tool")
          return { type: "text", text: `answer for ${user}: ${last.content?.split("\n")[3]}` };
        return { type: "tool_calls", calls: [{ arguments: { command: `echo ${user}` } }] };
      },
      chunkDelayMs: 2,
    });
    const acquire = new AcquireDouble();
    const executor = new ExecutorDouble();
    const model = { baseURL: server.baseURL, apiKey: "k", model: "m" };
    const run = (message: string) => {
      const events: ChatEvent[] = [];
      return runChat(
        { message, sessionId: message, history: [{ role: "user", content: `history of ${message}` }] },
        {
          tenant: "t",
          requestId: `r-${message}`,
          model,
          acquire: acquire.acquire,
          executor,
          bus: new EventBus("a"),
        },
        (e) => events.push(e),
        new AbortController().signal,
      ).then((result) => ({ result, events }));
    };
    const [a, b] = await Promise.all([run("alpha"), run("beta")]);
    expect(a.result.ok && a.result.value.reply).toBe("answer for alpha: ran: echo alpha");
    expect(b.result.ok && b.result.value.reply).toBe("answer for beta: ran: echo beta");
    expect(acquire.leases).toHaveLength(2);
    const podOf = (events: ChatEvent[]) => events.find((e) => e.type === "sandbox.acquired");
    expect(podOf(a.events)).not.toEqual(podOf(b.events));
    for (const r of server.completions()) {
      const texts = (r.body?.messages ?? []).map((m) => m.content ?? "").join("\n");
      const mine = texts.includes("alpha") ? "alpha" : "beta";
      const other = mine === "alpha" ? "beta" : "alpha";
      expect(texts).not.toContain(other);
    }
  });
});

describe("runChat on the shared pipeline", () => {
  it("every command of a chat emits exec.started and exec.finished on the agent's bus, like /v1/exec", async () => {
    const bus = new EventBus("agent-test");
    const seen: Array<[string, string | undefined, string | undefined, string | undefined]> = [];
    bus.on((e) => seen.push([e.type, e.requestId, e.tenant, e.pod]));
    const { result } = await chat(
      [
        { type: "tool_calls", calls: [toolCall("echo one"), toolCall("echo two")] },
        { type: "text", text: "done" },
      ],
      { bus },
    );
    expect(result.ok).toBe(true);
    expect(seen).toEqual([
      ["exec.started", "req-1", "tenant-1", "sandbox-0"],
      ["exec.finished", "req-1", "tenant-1", "sandbox-0"],
      ["exec.started", "req-1", "tenant-1", "sandbox-0"],
      ["exec.finished", "req-1", "tenant-1", "sandbox-0"],
    ]);
  });
});

describe("runChat failures", () => {
  it("answers model_not_configured before taking any lease", async () => {
    let acquireCalls = 0;
    const handler = createChatHandler({
      model: readModelConfig({}),
      acquire: async () => {
        acquireCalls++;
        return err(new AppError("internal", "must not be called"));
      },
      executor: new ExecutorDouble(),
      bus: new EventBus("agent-test"),
    });
    const events: ChatEvent[] = [];
    const result = await handler(request("run ls"), {
      tenant: "t",
      requestId: "r-9",
      signal: new AbortController().signal,
      emit: (e) => events.push(e),
    });
    expect(!result.ok && result.error.code).toBe("model_not_configured");
    expect(!result.ok && result.error.message).toMatch(/OPENAI_MODEL.*OPENAI_BASE_URL.*OPENAI_API_KEY/);
    expect(events).toEqual([
      { type: "error", error: expect.objectContaining({ code: "model_not_configured", requestId: "r-9" }) },
    ]);
    expect(acquireCalls).toBe(0);
  });

  it("binds tenant and request id into acquire through the handler", async () => {
    server = await startScriptedOpenAI({
      script: [
        { type: "tool_calls", calls: [toolCall("ls")] },
        { type: "text", text: "ok" },
      ],
    });
    const seen: Array<{ tenant: string; requestId: string; signal?: AbortSignal }> = [];
    const leases = new AcquireDouble();
    const handler = createChatHandler({
      model: readModelConfig({ OPENAI_BASE_URL: server.baseURL, OPENAI_MODEL: "m" }),
      acquire: (req) => {
        seen.push(req);
        return leases.acquire(req.signal ?? new AbortController().signal);
      },
      executor: new ExecutorDouble(),
      bus: new EventBus("agent-test"),
    });
    const result = await handler(request("x"), {
      tenant: "tenant-7",
      requestId: "req-7",
      signal: new AbortController().signal,
      emit: () => {},
    });
    expect(result.ok).toBe(true);
    expect(seen.map((s) => [s.tenant, s.requestId, s.signal instanceof AbortSignal])).toEqual([
      ["tenant-7", "req-7", true],
    ]);
    expect(server.completions()[0]?.headers.authorization).toBe("Bearer no-key-configured");
  });

  it("retries a 429 (honouring a small retry-after) and then succeeds", async () => {
    const started = Date.now();
    const { result, server } = await chat([
      { type: "error", status: 429, retryAfter: "0.3" },
      { type: "text", text: "after the rate limit" },
    ]);
    expect(result.ok && result.value.reply).toBe("after the rate limit");
    const [first, second] = server.completions();
    expect(server.completions()).toHaveLength(2);
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(280);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("retries 500, a dropped connection, and a 503 mid-conversation", async () => {
    const { result, server, executor } = await chat([
      { type: "error", status: 500 },
      { type: "drop" },
      { type: "tool_calls", calls: [toolCall("ls")] },
      { type: "error", status: 503 },
      { type: "text", text: "made it" },
    ]);
    expect(result.ok && result.value.reply).toBe("made it");
    expect(server.completions()).toHaveLength(5);
    expect(executor.calls).toHaveLength(1);
  });

  it("gives up on a persistent 503 with model_unavailable after the bounded attempts", async () => {
    const { result, events, server, acquire } = await chat(
      Array.from({ length: 10 }, () => ({ type: "error" as const, status: 503 })),
      { options: { retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 20 } } },
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe("model_unavailable");
    expect(result.error.message).toContain("3 attempts");
    expect(server.completions()).toHaveLength(3);
    expect(events).toEqual([
      { type: "error", error: expect.objectContaining({ code: "model_unavailable" }), modelCalls: 1 },
    ]);
    expect(acquire.leases).toHaveLength(0);
  });

  it("a turn that fails after N model calls reports N (error event and the JSON answer's header)", async () => {
    const { result, events, server } = await chat([
      { type: "tool_calls", calls: [toolCall("ls")] },
      { type: "tool_calls", calls: [toolCall("pwd")] },
      { type: "error", status: 400, message: "bad request from the provider" },
    ]);
    expect(server.completions()).toHaveLength(3);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
    // The JSON answer (errorResponse) carries the count; the edge charges the two beyond the first.
    expect(!result.ok && result.error.headers).toEqual({ [MODEL_CALLS_HEADER]: "3" });
    expect(events.at(-1)).toEqual({
      type: "error",
      error: expect.objectContaining({ code: "model_unavailable" }),
      modelCalls: 3,
    });
  });

  it("never passes the provider's words to the tenant: they are logged with the request id", async () => {
    const providerText = "org-4f7Q quota exceeded for key sk-live-…9zX in us-east-2";
    const { result, events, logged } = await chat([{ type: "error", status: 400, message: providerText }]);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
    expect(JSON.stringify(result)).not.toContain("org-4f7Q");
    expect(JSON.stringify(events)).not.toContain("org-4f7Q");
    expect(events).toEqual([
      {
        type: "error",
        error: {
          code: "model_unavailable",
          message: "the model server is unavailable (1 attempt)",
          requestId: "req-1",
        },
        modelCalls: 1,
      },
    ]);
    expect(logged).toContainEqual(
      expect.objectContaining({
        msg: "model call failed",
        requestId: "req-1",
        error: expect.stringContaining(providerText),
      }),
    );
  });

  it("does not wait out a long retry-after: model_unavailable at once, with retryAfterSeconds", async () => {
    const { result, server } = await chat([{ type: "error", status: 429, retryAfter: "120" }]);
    expect(server.completions()).toHaveLength(1);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
    expect(!result.ok && result.error.retryAfterSeconds).toBe(120);
  });

  it("does not retry a 401 (wrong key)", async () => {
    server = await startScriptedOpenAI({ script: [{ type: "text", text: "x" }], apiKey: "right" });
    const events: ChatEvent[] = [];
    const result = await runChat(
      request("hi"),
      {
        tenant: "t",
        requestId: "r",
        model: { baseURL: server.baseURL, apiKey: "wrong", model: "m" },
        acquire: new AcquireDouble().acquire,
        executor: new ExecutorDouble(),
        bus: new EventBus("agent-test"),
      },
      (e) => events.push(e),
      new AbortController().signal,
    );
    expect(server.completions()).toHaveLength(1);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
  });

  it("treats a stalled model stream as a failure after the idle timeout", async () => {
    const { result, server } = await chat([{ type: "stall" }, { type: "stall" }], {
      options: { modelIdleTimeoutMs: 300, retry: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 10 } },
    });
    expect(server.completions()).toHaveLength(2);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
    expect(!result.ok && result.error.message).toBe("the model server is unavailable (2 attempts)");
  });

  it("does not retry once text has been streamed (it cannot be taken back)", async () => {
    const { result, server, events } = await chat(
      [
        { type: "stall", text: "partial " },
        { type: "text", text: "x" },
      ],
      {
        options: { modelIdleTimeoutMs: 300 },
      },
    );
    expect(server.completions()).toHaveLength(1);
    expect(!result.ok && result.error.code).toBe("model_unavailable");
    expect(deltaText(events)).toBe("partial ");
    expect(types(events).at(-1)).toBe("error");
  });

  it("reports a queue timeout from acquire as the request's error", async () => {
    const acquire = new AcquireDouble(new AppError("queue_timeout", "no pod free", { retryAfterSeconds: 2 }));
    const { result, events } = await chat([{ type: "tool_calls", calls: [toolCall("ls")] }], { acquire });
    expect(!result.ok && result.error.code).toBe("queue_timeout");
    expect(types(events)).toEqual(["sandbox.waiting", "error"]);
    expect(events[1]).toMatchObject({
      error: { code: "queue_timeout", retryAfterSeconds: 2, requestId: "req-1" },
    });
  });

  it("ends the request with sandbox_failed when the executor fails, releasing the lease first", async () => {
    const executor = new ExecutorDouble(() => err(new AppError("sandbox_failed", "pod unreachable")));
    const { result, events, acquire } = await chat([{ type: "tool_calls", calls: [toolCall("ls")] }], {
      executor,
    });
    expect(!result.ok && result.error.code).toBe("sandbox_failed");
    expect(withoutDeltas(events)).toEqual([
      "sandbox.waiting",
      "sandbox.acquired",
      "tool.call",
      "sandbox.released",
      "error",
    ]);
    expect(acquire.leases[0]?.releases).toBe(1);
  });

  it("stops the command and reports lease_lost when the lease is lost mid-command", async () => {
    const acquire = new AcquireDouble();
    let execSignal: AbortSignal | undefined;
    const executor = new ExecutorDouble(
      (call) =>
        new Promise((resolve) => {
          execSignal = call.signal;
          call.signal.addEventListener("abort", () =>
            resolve(ok(outcome("", { exitCode: null, signal: "SIGKILL", durationMs: 40 }))),
          );
          setTimeout(() => acquire.leases[0]?.lose(), 50);
        }),
    );
    const { result, events } = await chat([{ type: "tool_calls", calls: [toolCall("sleep 60")] }], {
      acquire,
      executor,
    });
    expect(execSignal?.aborted).toBe(true);
    expect(!result.ok && result.error.code).toBe("lease_lost");
    expect(withoutDeltas(events).slice(-2)).toEqual(["sandbox.released", "error"]);
    expect(acquire.leases[0]?.releases).toBe(1);
  });

  it("aborting mid-command kills the command, releases the lease and emits nothing more", async () => {
    const client = new AbortController();
    let execSignal: AbortSignal | undefined;
    let execSettled = false;
    const executor = new ExecutorDouble(
      (call) =>
        new Promise((resolve) => {
          execSignal = call.signal;
          call.signal.addEventListener("abort", () => {
            execSettled = true;
            resolve(err(new AppError("internal", "aborted")));
          });
        }),
    );
    const acquire = new AcquireDouble();
    const { result, events, server } = await chat(
      [
        { type: "tool_calls", calls: [toolCall("sleep 600")] },
        { type: "text", text: "never" },
      ],
      {
        acquire,
        executor,
        signal: client.signal,
        onEvent: (e) => {
          if (e.type === "tool.call") setTimeout(() => client.abort(), 30);
        },
      },
    );
    expect(execSignal?.aborted).toBe(true);
    expect(execSettled).toBe(true);
    expect(acquire.leases[0]?.releases).toBe(1);
    expect(types(events)).toEqual(["sandbox.waiting", "sandbox.acquired", "tool.call"]);
    expect(!result.ok && result.error.code).toBe("request_cancelled");
    expect(server.completions()).toHaveLength(1);
  });

  it("aborting mid-stream closes the model connection, emits nothing more, and returns the abort reason", async () => {
    const client = new AbortController();
    const { result, events, server } = await chat([{ type: "stall", text: "thinking about it" }], {
      signal: client.signal,
      onEvent: (e) => {
        if (e.type === "assistant.delta") client.abort(new AppError("shutting_down", "agent stopping"));
      },
    });
    expect(!result.ok && result.error.code).toBe("shutting_down");
    expect(types(events)).toEqual(["assistant.delta"]);
    // the server sees the connection go away
    for (let i = 0; i < 50 && server.openStalls() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.openStalls()).toBe(0);
  });
});
