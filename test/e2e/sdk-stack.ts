import { fileURLToPath } from "node:url";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { SandboxApiError } from "../../sdk/typescript/src/index.ts";
import { demoResponder, type ScriptedOpenAI, startScriptedOpenAI } from "../support/scripted-openai.ts";
import { runProcess, tempDir } from "./stack-helpers.ts";

// The local stack the client suites (TypeScript, CLI, Python) run against: one region, one agent,
// three warm pods, the scripted OpenAI-compatible server (NOT a model) behind chat, and a quota
// generous enough for the suites' own traffic (the 429 tests burst past it with their own tenant).

export const SDK_QUOTA_BURST = 40;

export interface SdkStack {
  stack: Stack;
  model: ScriptedOpenAI;
  close(): Promise<void>;
}

export async function startSdkStack(prefix: string): Promise<SdkStack> {
  const tmp = tempDir(prefix);
  const model = await startScriptedOpenAI({ respond: demoResponder });
  try {
    const stack = await startStack({
      dir: tmp.dir,
      agentsPerRegion: 1,
      poolSize: 3,
      agentEnv: {
        LOG_LEVEL: "info",
        OPENAI_BASE_URL: model.baseURL,
        OPENAI_API_KEY: "not-needed",
        OPENAI_MODEL: model.model,
      },
      edgeVars: { TENANT_QUOTA_BURST: String(SDK_QUOTA_BURST), TENANT_QUOTA_PER_MINUTE: "600" },
    });
    return {
      stack,
      model,
      async close() {
        await stack.close();
        await model.close();
        tmp.remove();
      },
    };
  } catch (e) {
    await model.close();
    tmp.remove();
    throw e;
  }
}

/** The API error a promise rejects with; fails the test if it resolves. */
export async function apiError(p: Promise<unknown>): Promise<SandboxApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SandboxApiError) return e;
    throw e;
  }
  throw new Error("expected a SandboxApiError, the call succeeded");
}

/** Builds @pi-sandbox/client's dist/ (what its bin and its package name load), as `npm run build` does. */
export async function buildTsClient(): Promise<void> {
  const tsc = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url));
  const r = await runProcess(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
    cwd: fileURLToPath(new URL("../../sdk/typescript/", import.meta.url)),
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`building the TypeScript client failed:\n${r.out}`);
}
