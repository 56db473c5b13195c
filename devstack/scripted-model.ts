import { demoResponder, startScriptedOpenAI } from "./fixtures/scripted-openai.ts";

/**
 * The offline stand-in for a model: the scripted OpenAI-compatible server from devstack/fixtures,
 * answering every chat by running the command in backticks. It is NOT a language model, and says
 * so in its model name.
 */
export async function startScriptedModel(): Promise<{ env: Record<string, string>; close(): Promise<void> }> {
  const server = await startScriptedOpenAI({ respond: demoResponder });
  return {
    env: { OPENAI_BASE_URL: server.baseURL, OPENAI_API_KEY: "not-needed", OPENAI_MODEL: server.model },
    close: () => server.close(),
  };
}
