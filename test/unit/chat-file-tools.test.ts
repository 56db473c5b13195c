/**
 * The chat loop's file tools: runChat against the scripted OpenAI-compatible server with the real
 * `openai` client; the sandbox side is in-memory TEST DOUBLES of the lease, executor and files
 * ports (the agent's real SandboxFiles are tested through the edge). The chat module is not stubbed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { runChat } from "../../cluster-agent/chat/run-chat.ts";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type {
  ExecTarget as ChatExecTarget,
  SandboxFiles as ChatFiles,
  SandboxLease as ChatLease,
} from "../../cluster-agent/exec/executor.ts";
import { type ChatEvent, ChatEventSchema, type FileEntry as ChatFileEntry } from "../../shared/api.ts";
import { AppError, err, ok } from "../../shared/errors.ts";
import { offeredTools } from "../support/offered-tools.ts";
import { type ScriptedOpenAI, type ScriptTurn, startScriptedOpenAI } from "../support/scripted-openai.ts";

/** Test double of the files port: one in-memory workspace per pod, keyed by workspace-relative path. */
class FilesDouble implements ChatFiles {
  readonly pods = new Map<string, Map<string, Uint8Array>>();
  writes: string[] = [];
  private ws(t: ChatExecTarget) {
    let m = this.pods.get(t.pod);
    if (!m) this.pods.set(t.pod, (m = new Map()));
    return m;
  }
  async write(t: ChatExecTarget, path: string, body: Uint8Array) {
    this.writes.push(path);
    this.ws(t).set(path, body);
    return ok({ path, size: body.length });
  }
  async read(t: ChatExecTarget, path: string) {
    const bytes = this.ws(t).get(path);
    if (!bytes) return err(new AppError("not_found", `${path} does not exist`));
    return ok({
      kind: "file" as const,
      size: bytes.length,
      body: new Blob([new Uint8Array(bytes)]).stream(),
    });
  }
  async list(t: ChatExecTarget) {
    const entries: ChatFileEntry[] = [...this.ws(t)].map(([p, b]) => ({
      name: p,
      type: "file",
      size: b.length,
      mtime: new Date(0).toISOString(),
    }));
    return ok({ entries, truncated: false });
  }
  async remove(t: ChatExecTarget, path: string) {
    this.ws(t).delete(path);
    return ok(undefined);
  }
}

const lease = (pod: string): ChatLease => ({
  pod,
  podIP: "127.0.1.9",
  namespace: "pi-sandbox",
  fence: 1,
  lost: new AbortController().signal,
  release: async () => {},
});

let server: ScriptedOpenAI | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function chat(script: ScriptTurn[], files: ChatFiles | undefined) {
  server = await startScriptedOpenAI({ script, apiKey: "sk-test" });
  const events: ChatEvent[] = [];
  let leases = 0;
  const result = await runChat(
    { message: "make hello.py", sessionId: "s-1", history: [] },
    {
      tenant: "tenant-a",
      requestId: "req-1",
      model: { baseURL: server.baseURL, apiKey: "sk-test", model: "test-model" },
      acquire: async () => ok(lease(`pod-${leases++}`)),
      executor: { mode: "http", exec: async () => err(new AppError("internal", "no commands in this test")) },
      bus: new EventBus("agent-test"),
      ...(files ? { files } : {}),
      options: { retry: { baseDelayMs: 10, maxDelayMs: 50 } },
    },
    (e) => {
      expect(ChatEventSchema.safeParse(e).success).toBe(true);
      events.push(e);
    },
    new AbortController().signal,
  );
  return { result, events, leases: () => leases, server: server as ScriptedOpenAI };
}

const toolMessages = (s: ScriptedOpenAI) =>
  (s.completions().at(-1)?.body?.messages ?? [])
    .filter((m) => m.role === "tool")
    .map((m) => String(m.content));

describe("chat file tools", () => {
  it("write_file then read_file on the request's one pod; an ambiguous edit_file is a tool error and the loop goes on", async () => {
    const files = new FilesDouble();
    const { result, events, leases, server } = await chat(
      [
        {
          type: "tool_calls",
          calls: [
            {
              id: "w",
              name: "write_file",
              arguments: { path: "hello.py", content: 'print("hi")\nprint("hi")\n' },
            },
            { id: "r", name: "read_file", arguments: { path: "/workspace/hello.py" } },
          ],
        },
        {
          type: "tool_calls",
          calls: [
            {
              id: "e",
              name: "edit_file",
              arguments: { path: "hello.py", old_string: "hi", new_string: "yo" },
            },
          ],
        },
        {
          type: "tool_calls",
          calls: [
            {
              id: "e2",
              name: "edit_file",
              arguments: { path: "hello.py", old_string: "hi", new_string: "yo", replace_all: true },
            },
          ],
        },
        { type: "text", text: "done" },
      ],
      files,
    );
    expect(result.ok).toBe(true);
    const offered = server.completions()[0]?.body?.tools?.map((t) => t.function.name);
    expect(offered).toEqual(offeredTools({ files: true, processes: false }));
    const answers = toolMessages(server);
    expect(answers[0]).toBe("wrote 24 bytes to /workspace/hello.py");
    expect(answers[1]).toBe('     1\tprint("hi")\n     2\tprint("hi")');
    expect(answers[2]).toMatch(/^error edit_not_unique: .*occurs 2 times/);
    expect(answers[3]).toMatch(/2 replacement\(s\)/);
    expect(new TextDecoder().decode(files.pods.get("pod-0")?.get("hello.py"))).toBe(
      'print("yo")\nprint("yo")\n',
    );
    expect(leases()).toBe(1);
    const calls = events.flatMap((e) => (e.type === "tool.call" ? [e.command] : []));
    expect(calls).toEqual([
      "write_file /workspace/hello.py",
      "read_file /workspace/hello.py",
      "edit_file /workspace/hello.py",
      "edit_file /workspace/hello.py",
    ]);
    const results = events.flatMap((e) => (e.type === "tool.result" ? [e.exitCode] : []));
    expect(results).toEqual([0, 0, null, 0]);
    if (result.ok) expect(result.value.toolCalls.map((c) => c.command)).toEqual(calls);
  });

  it("bad arguments never reach the pod; without a files port the file tools are not offered", async () => {
    const files = new FilesDouble();
    const { server } = await chat(
      [
        {
          type: "tool_calls",
          calls: [{ id: "x", name: "write_file", arguments: { path: "../x", content: "" } }],
        },
        { type: "text", text: "ok" },
      ],
      files,
    );
    expect(toolMessages(server)[0]).toMatch(/^error: invalid arguments for write_file: path: .*'\.\.'/);
    expect(files.writes).toEqual([]);
    await server.close();
    const without = await chat(
      [
        { type: "tool_calls", calls: [{ id: "y", name: "read_file", arguments: { path: "a" } }] },
        { type: "text", text: "ok" },
      ],
      undefined,
    );
    expect(without.server.completions()[0]?.body?.tools?.map((t) => t.function.name)).toEqual(
      offeredTools({ files: false, processes: false }),
    );
    expect(toolMessages(without.server)[0]).toContain('no tool named "read_file"');
  });
});
