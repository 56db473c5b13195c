import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SandboxClient } from "../../sdk/typescript/src/index.ts";
import { type RecordedRequest, type ScriptTurn, startScriptedOpenAI } from "../support/scripted-openai.ts";
import { buildTsClient, type SdkStack, startSdkStack } from "./sdk-stack.ts";
import { runProcess, tempDir } from "./stack-helpers.ts";

// The real Pi (@mariozechner/pi-coding-agent, its own CLI in print mode) with our extension
// (`pi -e sdk/pi`), driven by the scripted OpenAI-compatible server (NOT a model) on loopback,
// against the running local stack: the tools' work must land in the sandbox, not on this machine.

const PI_CLI = fileURLToPath(
  new URL("../../node_modules/@mariozechner/pi-coding-agent/dist/cli.js", import.meta.url),
);
const EXTENSION = fileURLToPath(new URL("../../sdk/pi/", import.meta.url));

let sdk: SdkStack;
const work = tempDir("sdk-pi-");
beforeAll(async () => {
  await buildTsClient();
  sdk = await startSdkStack("sdk-pi-stack-");
}, 180_000);
afterAll(async () => {
  await sdk?.close();
  work.remove();
});

/** A project folder and a Pi agent folder whose only model is the scripted server. */
function piHome(name: string, baseURL: string) {
  const project = join(work.dir, name, "project");
  const agentDir = join(work.dir, name, "agent");
  mkdirSync(project, { recursive: true });
  mkdirSync(agentDir, { recursive: true });
  writeFileSync(
    join(agentDir, "models.json"),
    JSON.stringify({
      providers: {
        scripted: {
          baseUrl: baseURL,
          api: "openai-completions",
          apiKey: "not-needed",
          compat: { supportsDeveloperRole: false, supportsReasoningEffort: false },
          models: [{ id: "scripted-not-an-llm" }],
        },
      },
    }),
  );
  return { project, agentDir, home: join(work.dir, name) };
}

function pi(h: ReturnType<typeof piHome>, env: Record<string, string>, prompt: string) {
  return runProcess(
    process.execPath,
    [
      PI_CLI,
      "-p",
      "--no-session",
      "--offline",
      "-e",
      EXTENSION,
      "--provider",
      "scripted",
      "--model",
      "scripted-not-an-llm",
      prompt,
    ],
    {
      cwd: h.project,
      env: { PATH: process.env.PATH ?? "", HOME: h.home, PI_CODING_AGENT_DIR: h.agentDir, ...env },
      cleanEnv: true,
      timeoutMs: 180_000,
    },
  );
}

const call = (name: string, args: Record<string, unknown>): ScriptTurn => ({
  type: "tool_calls",
  calls: [{ name, arguments: args }],
});
/** The tool result the model got back for each of its calls, in order. */
const toolResults = (reqs: RecordedRequest[]) =>
  (reqs.at(-1)?.body?.messages ?? []).filter((m) => m.role === "tool").map((m) => String(m.content ?? ""));

describe("Pi with the pi-sandbox extension", () => {
  it("a turn that writes, edits, reads, greps, finds, lists and runs a file does it all in the sandbox", async () => {
    const model = await startScriptedOpenAI({
      script: [
        call("write", { path: "app/hello.sh", content: "#!/bin/sh\necho greeting=hi\n" }),
        call("edit", {
          path: "app/hello.sh",
          edits: [{ oldText: "greeting=hi", newText: "greeting=edited" }],
        }),
        call("read", { path: "app/hello.sh" }),
        call("grep", { pattern: "greeting=", path: "app" }),
        call("find", { pattern: "*.sh" }),
        call("ls", { path: "app" }),
        call("bash", { command: "sh app/hello.sh && pwd && echo to-err >&2" }),
        call("read", { path: "/etc/hostname" }),
        call("write", { path: "../escape.txt", content: "no" }),
        { type: "text", text: "all done" },
      ],
    });
    try {
      const h = piHome("turn", model.baseURL);
      const name = "pi-e2e-turn";
      const asTenantA = {
        PI_SANDBOX_URL: sdk.stack.edgeUrl,
        PI_SANDBOX_TOKEN: sdk.stack.tokens.tenantA,
        PI_SANDBOX_NAME: name,
      };
      const r = await pi(h, asTenantA, "build the greeting script");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("all done");
      expect(model.remaining()).toBe(0);
      const results = toolResults(model.completions());
      expect(results).toHaveLength(9);
      const [, edited, read, grep, find, ls, bash, outside, climbing] = results;
      expect(edited).toMatch(/Successfully replaced|edited|1 /i);
      expect(read).toContain("echo greeting=edited");
      expect(grep).toContain("app/hello.sh:2:echo greeting=edited");
      expect(find).toContain("app/hello.sh");
      expect(ls).toContain("hello.sh");
      expect(bash).toContain("greeting=edited\n/workspace");
      expect(bash).toContain("to-err");
      expect(outside).toContain("outside the sandbox workspace");
      expect(climbing).toContain("outside the sandbox workspace");

      // The sandbox has the result; this machine does not.
      expect(existsSync(join(h.project, "app"))).toBe(false);
      const client = new SandboxClient({ baseUrl: sdk.stack.edgeUrl, token: sdk.stack.tokens.tenantA });
      const [sb] = await client.sandboxes.list({ name });
      expect(sb, "the named sandbox").toBeDefined();
      expect(await sb!.files.read("app/hello.sh", { as: "text" })).toBe("#!/bin/sh\necho greeting=edited\n");

      // A restarted Pi finds the same sandbox by its name.
      model.push(call("bash", { command: "cat app/hello.sh" }), { type: "text", text: "again" });
      const again = await pi(h, asTenantA, "show it");
      expect(again.code, again.stderr).toBe(0);
      expect(toolResults(model.completions()).at(-1)).toContain("greeting=edited");
      expect((await client.sandboxes.list({ name })).map((s) => s.id)).toEqual([sb!.id]);
      await sb!.close();
    } finally {
      await model.close();
    }
  }, 300_000);

  it("bash with a timeout: Pi reports it timed out, and the command's process group is gone from the sandbox", async () => {
    // The command leaves a background child (its pid recorded) and waits; at 2 s the sandbox kills
    // the whole group. The next call checks the child from inside the sandbox.
    const model = await startScriptedOpenAI({
      script: [
        call("bash", {
          command: "sleep 300 & echo $! > /workspace/child.pid; echo started; sleep 300",
          timeout: 2,
        }),
        call("bash", {
          command:
            'if kill -0 "$(cat /workspace/child.pid)" 2>/dev/null; then echo child-alive; else echo child-gone; fi',
        }),
        { type: "text", text: "checked" },
      ],
    });
    try {
      const h = piHome("timeout", model.baseURL);
      const r = await pi(
        h,
        {
          PI_SANDBOX_URL: sdk.stack.edgeUrl,
          PI_SANDBOX_TOKEN: sdk.stack.tokens.tenantA,
          PI_SANDBOX_NAME: "pi-e2e-timeout",
        },
        "run it with a timeout",
      );
      expect(r.code, r.stderr).toBe(0);
      const [timedOut, check] = toolResults(model.completions());
      expect(timedOut).toContain("started");
      expect(timedOut).toContain("Command timed out after 2 seconds");
      expect(check).toContain("child-gone");
      const client = new SandboxClient({ baseUrl: sdk.stack.edgeUrl, token: sdk.stack.tokens.tenantA });
      for (const sb of await client.sandboxes.list({ name: "pi-e2e-timeout" })) await sb.close();
    } finally {
      await model.close();
    }
  }, 300_000);

  it("without a token, every tool call fails with one clear error naming the variable", async () => {
    const model = await startScriptedOpenAI({
      script: [call("bash", { command: "true" }), { type: "text", text: "gave up" }],
    });
    try {
      const h = piHome("no-token", model.baseURL);
      const r = await pi(h, { PI_SANDBOX_URL: sdk.stack.edgeUrl }, "try");
      expect(toolResults(model.completions())[0]).toContain("PI_SANDBOX_TOKEN is not set");
      expect(r.stdout + r.stderr).toContain("gave up");
    } finally {
      await model.close();
    }
  }, 180_000);
});
