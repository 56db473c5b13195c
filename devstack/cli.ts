// `npm start`: the whole system on this machine. Prints the URLs and ready-to-use tokens, writes
// them to .devstack/state.json, and stops everything on Ctrl-C.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readModelConfig } from "../cluster-agent/chat/model-config.ts";
import { ensureSystemDeps } from "../scripts/system-deps.mjs";
import { startScriptedModel } from "./scripted-model.ts";
import { startStack } from "./stack.ts";

export interface StackState {
  edgeUrl: string;
  dashboardUrl: string;
  tokens: { tenantA: string; tenantB: string; admin: string };
  kubeconfig: string;
}

const args = new Set(process.argv.slice(2));
// Only what the stack runs on: chromium is for the browser tests, never for `npm start`.
if (!ensureSystemDeps({ purposes: ["stack"], entry: "npm start" })) process.exit(1);

const modelEnv: Record<string, string> = {};
for (const k of [
  "OPENAI_BASE_URL",
  "OPENAI_API_KEY",
  "OPENAI_MODEL",
  "CHAT_MAX_TOOL_ROUNDS",
  "CHAT_STREAM",
]) {
  const v = process.env[k];
  if (v) modelEnv[k] = v;
}
// Without OPENAI_MODEL the first chat still works: the scripted stand-in (labelled as such in the
// banner and in every reply) answers it. `--scripted-model` uses it whatever OPENAI_* say.
const scripted =
  args.has("--scripted-model") || !modelEnv.OPENAI_MODEL ? await startScriptedModel() : undefined;
if (scripted) Object.assign(modelEnv, scripted.env);

const stack = await startStack({
  // DEVSTACK_DIR: a second stack beside the one in .devstack (the npm-start test runs one).
  dir: process.env.DEVSTACK_DIR,
  edgePort: Number(process.env.EDGE_PORT ?? 8787),
  persistEdge: true,
  // Sandboxes reach what their network policy allows (default nothing) through the agents' proxy.
  egress: true,
  agentEnv: { LOG_LEVEL: process.env.LOG_LEVEL ?? "info", ...modelEnv },
  log: (m) => console.log(`… ${m}`),
}).catch(async (e: unknown) => {
  await scripted?.close();
  console.error(`\nthe stack failed to start: ${e instanceof Error ? e.message : String(e)}`);
  console.error("agent logs are in .devstack/logs/");
  process.exit(1);
});

const state: StackState = {
  edgeUrl: stack.edgeUrl,
  dashboardUrl: stack.dashboardUrl,
  tokens: stack.tokens,
  kubeconfig: stack.kubeconfig,
};
const stateFile = join(stack.dir, "state.json");
writeFileSync(stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });

// The agent reads the same variables the same way: a banner that says chat works means it does.
const model = readModelConfig(modelEnv);
const chatLine = !model.ok
  ? `chat       NOT CONFIGURED: ${model.error.message}`
  : scripted
    ? "chat       SCRIPTED STAND-IN, not a language model: it runs the command you put in backticks.\n" +
      "             For a real model restart with OPENAI_MODEL and OPENAI_API_KEY and/or OPENAI_BASE_URL set."
    : `chat       model ${model.value.model} at ${model.value.baseURL ?? "OpenAI"}`;
const chatTry = model.ok
  ? `\n    curl -s -X POST ${stack.edgeUrl}/chat -H "authorization: Bearer $TENANT_A" -d '{"message":"Run pwd and ls in the sandbox"}'\n    npm run demo`
  : "";
console.log(`
pi-sandbox-runtime is up (${process.uptime().toFixed(1)} s since npm start): devcluster, ${stack.agents.length} agents, edge, dashboard

  edge       ${stack.edgeUrl}
  dashboard  ${stack.dashboardUrl}#token=${stack.tokens.admin}
  kubeconfig ${stack.kubeconfig}
  state      ${stateFile}
  logs       ${join(stack.dir, "logs")}
  ${chatLine}

  tokens (12 h):
    TENANT_A=${stack.tokens.tenantA}
    TENANT_B=${stack.tokens.tenantB}
    ADMIN=${stack.tokens.admin}

  try:
    export TENANT_A=${stack.tokens.tenantA}
    curl -s -X POST ${stack.edgeUrl}/v1/exec -H "authorization: Bearer $TENANT_A" -d '{"command":"pwd && ls -la"}'${chatTry}

Ctrl-C (or SIGTERM/SIGINT to npm start's pid) stops everything.`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping…");
  const force = setTimeout(() => process.exit(1), 30_000);
  force.unref();
  await stack.close();
  await scripted?.close();
  rmSync(stateFile, { force: true });
  rmSync(join(stack.dir, "cluster"), { recursive: true, force: true });
  console.log("stopped");
  process.exit(0);
};
// Miniflare installs SIGINT/SIGTERM handlers that exit at once; this CLI owns the process and
// stops everything in order instead (stack.close() disposes Miniflare itself).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.removeAllListeners(signal);
  process.on(signal, () => void stop());
}
