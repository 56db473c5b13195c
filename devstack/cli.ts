// `npm start`: the whole system on this machine. Prints the URLs and ready-to-use tokens, writes
// them to .devstack/state.json, and stops everything on Ctrl-C.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
const scripted =
  args.has("--scripted-model") && !modelEnv.OPENAI_MODEL ? await startScriptedModel() : undefined;
if (scripted) Object.assign(modelEnv, scripted.env);

const stack = await startStack({
  edgePort: Number(process.env.EDGE_PORT ?? 8787),
  persistEdge: true,
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

const chatLine = modelEnv.OPENAI_MODEL
  ? scripted
    ? "chat       SCRIPTED STAND-IN — not a language model (it runs the command you put in backticks)"
    : `chat       model ${modelEnv.OPENAI_MODEL} at ${modelEnv.OPENAI_BASE_URL ?? "OpenAI"}`
  : "chat       not configured: restart with OPENAI_MODEL and OPENAI_BASE_URL and/or OPENAI_API_KEY set,\n" +
    "             or with `npm start -- --scripted-model` (a scripted stand-in, not a language model)";
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
    curl -s -X POST ${stack.edgeUrl}/v1/exec -H "authorization: Bearer $TENANT_A" -d '{"command":"pwd && ls -la"}'
    curl -s -X POST ${stack.edgeUrl}/chat -H "authorization: Bearer $TENANT_A" -d '{"message":"Run pwd and ls in the sandbox"}'
    npm run demo

Ctrl-C stops everything.`);

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
