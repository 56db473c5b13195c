export { type ChatHandlerDeps, type ChatRequestContext, createChatHandler } from "./chat-handler.ts";
export {
  type ChatOptions,
  type ChatOptionsInput,
  readChatOptions,
  resolveChatOptions,
} from "./chat-options.ts";
export { type ModelConfig, readModelConfig } from "./model-config.ts";
export { type ChatDeps, type ChatLog, runChat } from "./run-chat.ts";
