import type { Result } from "../../shared/errors.ts";
import type { ExecTarget as ChatExecTarget } from "../exec/executor.ts";

/*
 * The part of the agent's sandbox files (cluster-agent/exec/files.ts, SandboxFiles) the chat
 * tools use, declared structurally: that module's SandboxFiles satisfies it.
 * Paths are relative to the workspace ("." is the workspace); the pod confines them (symlinks included).
 */

export interface ChatFileEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mtime: string;
}

export interface ChatFiles {
  write(
    target: ChatExecTarget,
    path: string,
    body: Uint8Array,
    opts: { signal: AbortSignal; maxBytes: number },
  ): Promise<Result<{ path: string; size: number }>>;
  read(
    target: ChatExecTarget,
    path: string,
    opts: { signal: AbortSignal },
  ): Promise<
    Result<
      | { kind: "file"; size: number; body: ReadableStream<Uint8Array> }
      | { kind: "dir"; entries: ChatFileEntry[] }
    >
  >;
  list(
    target: ChatExecTarget,
    path: string,
    opts: { signal: AbortSignal; recursive?: boolean; limit?: number },
  ): Promise<Result<{ entries: ChatFileEntry[]; truncated: boolean }>>;
}
