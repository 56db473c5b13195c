/**
 * The tool names a chat model is offered, in order, written out (not read from the source) so the
 * tests that check the offer fail when it changes: run_in_sandbox, then these as the agent has
 * files and processes, then get_network, then open_port_link with port links in session mode.
 */
export const FILE_TOOL_NAMES = ["read_file", "write_file", "edit_file", "list_files"] as const;
export const PROCESS_TOOL_NAMES = [
  "start_process",
  "read_process_output",
  "write_process_stdin",
  "stop_process",
  "list_processes",
] as const;

export function offeredTools(o: { files: boolean; processes: boolean; portLink?: boolean }): string[] {
  return [
    "run_in_sandbox",
    ...(o.files ? FILE_TOOL_NAMES : []),
    ...(o.processes ? PROCESS_TOOL_NAMES : []),
    "get_network",
    ...(o.portLink ? ["open_port_link"] : []),
  ];
}
