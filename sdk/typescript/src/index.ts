export { type ChatOptions, SandboxClient, Sandboxes, Secrets } from "./client.ts";
export {
  CLIENT_ERROR_CODES,
  type ClientErrorCode,
  SandboxApiError,
  type SandboxErrorCode,
} from "./errors.ts";
export type { ExecOptions } from "./exec-spec.ts";
export { SandboxPorts } from "./ports.ts";
export { type OutputChunk, type OutputOptions, ProcessHandle, SandboxProcesses } from "./processes.ts";
export { type FileData, Sandbox, SandboxFiles } from "./sandbox.ts";
export { type AttachOptions, TERMINAL_SUBPROTOCOL, Terminal, type TerminalEnd } from "./terminal.ts";
export type { CallOptions, ClientOptions } from "./transport.ts";
export type * from "./types.ts";
