import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../../devstack/stack.ts";
import type { ChatResponse } from "../../shared/api.ts";
import { offeredTools } from "../support/offered-tools.ts";
import {
  type RecordedRequest,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";
import { bearer, tempDir } from "./stack-helpers.ts";

// Issue 14's chat file tools across processes: the real `openai` client in real agent processes,
// the scripted OpenAI-compatible server (not a model), the edge in workerd, devcluster pods, and
// the agent's own SandboxFiles behind write_file / read_file / edit_file / list_files.

/** Plays a fixed sequence of tool calls, one per round, then replies with every tool answer. */
const PLAN: Array<{ name: string; arguments: Record<string, unknown> }> = [
  { name: "write_file", arguments: { path: "hello.py", content: 'print("hi")\nprint("hi")\n' } },
  { name: "read_file", arguments: { path: "/workspace/hello.py" } },
  { name: "edit_file", arguments: { path: "hello.py", old_string: "hi", new_string: "yo" } },
  {
    name: "edit_file",
    arguments: { path: "hello.py", old_string: 'print("hi")\nprint', new_string: 'print("yo")\nprint' },
  },
  { name: "run_in_sandbox", arguments: { command: "cat hello.py" } },
  { name: "list_files", arguments: {} },
];

/**
 * The process tools: start `cat`, type into it, a pid that does not exist, list, stop, read it all
 * again from offset 0. Each call is planned from the answers so far (the pid comes from the first).
 */
function processPlan(answers: string[]): Array<{ name: string; arguments: Record<string, unknown> }> {
  const pid = Number(/process (\d+): running/.exec(answers[0] ?? "")?.[1]);
  return [
    { name: "start_process", arguments: { command: "cat", yield_time_ms: 0 } },
    { name: "write_process_stdin", arguments: { pid, chars: "hello cat\n", yield_time_ms: 5000 } },
    { name: "read_process_output", arguments: { pid: 4_000_000 } },
    { name: "list_processes", arguments: {} },
    { name: "stop_process", arguments: { pid } },
    { name: "read_process_output", arguments: { pid, since: 0, yield_time_ms: 0 } },
  ];
}

function responder(req: RecordedRequest): ScriptTurn {
  const messages = req.body?.messages ?? [];
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  const answers = messages.slice(lastUser + 1).filter((m) => m.role === "tool");
  const plan =
    messages[lastUser]?.content === "use a process"
      ? processPlan(answers.map((m) => String(m.content ?? "")))
      : PLAN;
  const next = plan[answers.length];
  if (next) return { type: "tool_calls", calls: [{ id: `t${answers.length}`, ...next }] };
  return { type: "text", text: answers.map((m) => String(m.content ?? "")).join("\n---\n") };
}

const tmp = tempDir("stack-chat-tools-");
let stack: Stack;
let model: ScriptedOpenAI;

beforeAll(async () => {
  model = await startScriptedOpenAI({ respond: responder });
  stack = await startStack({
    dir: tmp.dir,
    agentsPerRegion: 1,
    poolSize: 2,
    agentEnv: {
      LOG_LEVEL: "info",
      OPENAI_BASE_URL: model.baseURL,
      OPENAI_API_KEY: "x",
      OPENAI_MODEL: model.model,
    },
    edgeVars: { TENANT_QUOTA_BURST: "100", TENANT_QUOTA_PER_MINUTE: "600" },
  });
}, 90_000);

afterAll(async () => {
  await stack?.close();
  await model?.close();
  tmp.remove();
});

describe("chat file tools through the edge", () => {
  it("write_file then read_file; an ambiguous edit_file is a tool error and the loop goes on", async () => {
    const res = await fetch(`${stack.edgeUrl}/v1/chat`, {
      method: "POST",
      headers: bearer(stack.tokens.tenantA),
      body: JSON.stringify({ message: "make hello.py" }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    const body = JSON.parse(text) as ChatResponse;
    const parts = body.reply.split("\n---\n");
    expect(parts[0]).toBe("wrote 24 bytes to /workspace/hello.py");
    expect(parts[1]).toBe('     1\tprint("hi")\n     2\tprint("hi")');
    expect(parts[2]).toMatch(/^error edit_not_unique: .*occurs 2 times/);
    expect(parts[3]).toMatch(/1 replacement/);
    expect(parts[4]).toContain('stdout:\nprint("yo")\nprint("hi")\n');
    expect(parts[5]).toContain("hello.py\tfile\t24");
    expect(body.toolCalls.map((c) => [c.command, c.exitCode])).toEqual([
      ["write_file /workspace/hello.py", 0],
      ["read_file /workspace/hello.py", 0],
      ["edit_file /workspace/hello.py", null],
      ["edit_file /workspace/hello.py", 0],
      ["cat hello.py", 0],
      ["list_files /workspace", 0],
    ]);
    const offered = model
      .completions()
      .at(-1)
      ?.body?.tools?.map((t) => t.function.name);
    expect(offered).toEqual(offeredTools({ files: true, processes: true }));
  }, 90_000);

  it("process tools: start cat, type into it, read its answer; a bad pid is a tool error; stop and read back", async () => {
    const res = await fetch(`${stack.edgeUrl}/v1/chat`, {
      method: "POST",
      headers: bearer(stack.tokens.tenantA),
      body: JSON.stringify({ message: "use a process" }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    const body = JSON.parse(text) as ChatResponse;
    const parts = body.reply.split("\n---\n");
    expect(parts).toHaveLength(6);
    const pid = Number(/^process (\d+): running/.exec(parts[0]!)?.[1]);
    expect(pid, parts[0]).toBeGreaterThan(0);
    expect(parts[1]).toBe(`process ${pid}: running\nnext_offset: 10\noutput:\nhello cat\n`);
    expect(parts[2]).toMatch(/^error process_not_found: /);
    expect(parts[3]).toBe(`process ${pid}: running\t10 bytes of output\tcat`);
    expect(parts[4]).toBe(`process ${pid}: killed by SIGTERM`);
    expect(parts[5]).toBe(`process ${pid}: killed by SIGTERM\nnext_offset: 10\noutput:\nhello cat\n`);
    expect(body.toolCalls.map((c) => [c.command, c.exitCode])).toEqual([
      ["start_process cat", 0],
      [`write_process_stdin ${pid}`, 0],
      ["read_process_output 4000000", null],
      ["list_processes", 0],
      [`stop_process ${pid}`, 0],
      [`read_process_output ${pid}`, 0],
    ]);
  }, 90_000);
});
