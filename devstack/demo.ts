// `npm run demo`: the seed's flow through the edge — one exec, then one chat — against the stack
// `npm start` is running (.devstack/state.json), or a stack of its own when none is. Exits 0 only
// when both worked; otherwise non-zero with the command that fixes it.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSse } from "../shared/sse.ts";
import type { StackState } from "./cli.ts";
import { startScriptedModel } from "./scripted-model.ts";
import { type Stack, startStack } from "./stack.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const stateFile = join(process.env.DEVSTACK_DIR ?? join(REPO, ".devstack"), "state.json");

let own: { stack: Stack; close(): Promise<void> } | undefined;
let state: StackState;
if (existsSync(stateFile)) {
  state = JSON.parse(readFileSync(stateFile, "utf8")) as StackState;
  console.log(`using the running stack at ${state.edgeUrl}`);
} else {
  console.log("no running stack (npm start); starting one for the demo…");
  const model = process.env.OPENAI_MODEL ? undefined : await startScriptedModel();
  if (model)
    console.log("chat uses the SCRIPTED STAND-IN: it is not a language model; set OPENAI_* for a real one");
  const stack = await startStack({
    dir: join(REPO, ".devstack-demo"),
    poolSize: 4,
    agentEnv: { LOG_LEVEL: "warn", ...(model?.env ?? {}) },
  });
  own = {
    stack,
    close: async () => {
      await stack.close();
      await model?.close();
    },
  };
  state = {
    edgeUrl: stack.edgeUrl,
    dashboardUrl: stack.dashboardUrl,
    tokens: stack.tokens,
    kubeconfig: stack.kubeconfig,
  };
}

/** What to do when a step failed: the one command that fixes the common causes. */
function fixFor(status: number, body: string): string {
  if (body.includes("model_not_configured")) {
    return (
      "chat has no model on the running stack: stop it and run `npm start` without OPENAI_MODEL " +
      "(the scripted stand-in), or `OPENAI_MODEL=<model> OPENAI_API_KEY=<key> npm start` for a real one"
    );
  }
  if (status === 401)
    return "the stack's tokens were rejected: stop it and run `npm start` again (fresh tokens)";
  return `see the agent logs in ${join(REPO, ".devstack", "logs")}`;
}

const auth = { authorization: `Bearer ${state.tokens.tenantA}`, "content-type": "application/json" };
let failure: string | undefined;
try {
  console.log('\n$ POST /v1/exec {"command":"uname -a; id; pwd; ls -la"}');
  const exec = await fetch(`${state.edgeUrl}/v1/exec`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ command: "uname -a; id; pwd; ls -la" }),
    signal: AbortSignal.timeout(60_000),
  });
  const execBody = await exec.text();
  console.log(
    `${exec.status} region=${exec.headers.get("x-sandbox-region")} request=${exec.headers.get("x-request-id")}`,
  );
  console.log(execBody);
  if (!exec.ok) failure = `exec failed (${exec.status}): ${fixFor(exec.status, execBody)}`;

  console.log('\n$ POST /chat {"message":"Run `pwd && ls -la` in the sandbox"}  (streamed)');
  const chat = await fetch(`${state.edgeUrl}/chat`, {
    method: "POST",
    headers: { ...auth, accept: "text/event-stream" },
    body: JSON.stringify({ message: "Run `pwd && ls -la` in the sandbox" }),
    signal: AbortSignal.timeout(120_000),
  });
  if (!chat.ok || !chat.body || !chat.headers.get("content-type")?.includes("text/event-stream")) {
    const body = await chat.text();
    console.log(`${chat.status} ${body}`);
    failure ??= `chat failed (${chat.status}): ${fixFor(chat.status, body)}`;
  } else {
    for await (const m of readSse(chat.body)) {
      if (m.event === "assistant.delta") continue;
      console.log(`  ${m.event.padEnd(18)} ${m.data.slice(0, 300)}`);
      if (m.event === "error") failure ??= `chat failed: ${fixFor(0, m.data)}`;
    }
  }
} catch (e) {
  failure ??= `the demo could not reach ${state.edgeUrl}: ${e instanceof Error ? e.message : String(e)}`;
} finally {
  await own?.close();
}
if (failure) {
  console.error(`\ndemo FAILED: ${failure}`);
  process.exit(1);
}
console.log("\ndemo OK: exec and chat both ran in a sandbox");
