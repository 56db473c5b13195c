import { AppError, err, ok, type Result } from "../../shared/errors.ts";

/** Where the chat loop sends Chat Completions requests: any OpenAI-compatible server. */
export interface ModelConfig {
  /** undefined = the openai client's default (api.openai.com). */
  baseURL: string | undefined;
  apiKey: string;
  model: string;
}

/**
 * Local OpenAI-compatible servers (vLLM, Ollama, llama.cpp) often need no key, but the openai
 * client refuses an empty one; this placeholder is sent instead and ignored by such servers.
 */
export const NO_API_KEY = "no-key-configured";

const nonEmpty = (v: string | undefined): string | undefined => {
  const t = v?.trim();
  return t === undefined || t === "" ? undefined : t;
};

/**
 * Reads OPENAI_MODEL, OPENAI_BASE_URL and OPENAI_API_KEY (the variables the openai SDK itself uses).
 * A model name is required, plus a server: OPENAI_BASE_URL (key optional) or OPENAI_API_KEY alone
 * (OpenAI's own endpoint). Anything missing is `model_not_configured`, naming what to set, so the
 * agent can refuse a chat before it takes a lease.
 */
export function readModelConfig(env: Record<string, string | undefined> = process.env): Result<ModelConfig> {
  const model = nonEmpty(env.OPENAI_MODEL);
  const baseURL = nonEmpty(env.OPENAI_BASE_URL);
  const apiKey = nonEmpty(env.OPENAI_API_KEY);
  const missing: string[] = [];
  if (model === undefined) missing.push("OPENAI_MODEL (the model name)");
  if (baseURL === undefined && apiKey === undefined) {
    missing.push(
      "OPENAI_BASE_URL (an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1) and/or OPENAI_API_KEY",
    );
  }
  if (missing.length > 0) {
    return err(
      new AppError(
        "model_not_configured",
        `no language model is configured: set ${missing.join(" and ")} on the agent, ` +
          "or run the local stack with `npm start -- --scripted-model` (a scripted stand-in, not a model)",
      ),
    );
  }
  if (baseURL !== undefined) {
    let url: URL;
    try {
      url = new URL(baseURL);
    } catch {
      return err(
        new AppError(
          "model_not_configured",
          `OPENAI_BASE_URL is not a URL: set it to e.g. http://host:port/v1`,
        ),
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return err(new AppError("model_not_configured", "OPENAI_BASE_URL must be an http:// or https:// URL"));
    }
  }
  return ok({ baseURL, apiKey: apiKey ?? NO_API_KEY, model: model as string });
}
