/**
 * The signals a sandbox process group may be sent (POST …/processes/:pid/signal): the one list, for
 * the public API (shared/api.ts) and the exec server (sandbox-server/protocol.ts), which may import
 * nothing else of shared/ but the SSE codec. No imports, so the exec server's bundle stays small.
 */
export const PROCESS_SIGNALS = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGKILL",
  "SIGUSR1",
  "SIGUSR2",
  "SIGSTOP",
  "SIGCONT",
  "SIGTSTP",
  "SIGWINCH",
] as const;
