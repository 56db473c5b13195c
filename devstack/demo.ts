// `npm run demo`: the seed's flow through the edge — one exec, then one chat — against the stack
// `npm start` is running (.devstack/state.json), or a stack of its own when none is.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSse } from "../shared/sse.ts";
import type { StackState } from "./cli.ts";
import { startScriptedModel } from "./scripted-model.ts";
import { type Stack, startStack } from "./stack.ts";

const stateFile = join(fileURLToPath(new URL("../", import.meta.url)), ".devstack", "state.json");

async function readEvents(res: Response, onEvent: (event: string, data: unknown) => void): Promise<void> {
  for await (const m of readSse(res.body!)) onEvent(m.event, JSON.parse(m.data));
}

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
    dir: join(fileURLToPath(new URL("../", import.meta.url)), ".devstack-demo"),
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

const auth = { authorization: `Bearer ${state.tokens.tenantA}`, "content-type": "application/json" };
try {
  console.log('\n$ POST /v1/exec {"command":"uname -a; id; pwd; ls -la"}');
  const exec = await fetch(`${state.edgeUrl}/v1/exec`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ command: "uname -a; id; pwd; ls -la" }),
  });
  console.log(
    `${exec.status} region=${exec.headers.get("x-sandbox-region")} request=${exec.headers.get("x-request-id")}`,
  );
  console.log(JSON.stringify(await exec.json(), null, 2));

  console.log('\n$ POST /chat {"message":"Run pwd and ls in the sandbox"}  (streamed)');
  const chat = await fetch(`${state.edgeUrl}/chat`, {
    method: "POST",
    headers: { ...auth, accept: "text/event-stream" },
    body: JSON.stringify({ message: "Run `pwd && ls -la` in the sandbox" }),
  });
  if (!chat.ok || !chat.headers.get("content-type")?.includes("text/event-stream")) {
    console.log(`${chat.status} ${await chat.text()}`);
  } else {
    await readEvents(chat, (event, data) => {
      if (event === "assistant.delta") return;
      console.log(`  ${event.padEnd(18)} ${JSON.stringify(data).slice(0, 300)}`);
    });
  }
} finally {
  await own?.close();
}
