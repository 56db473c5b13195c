// The Pi extension: Pi's seven tools (bash, read, write, edit, ls, grep, find) and its `!` commands
// run in a pi-sandbox-runtime sandbox instead of on this machine. The sandbox is found or created by
// name when the session starts, so a restarted Pi is back in the same workspace.
import {
  createBashToolDefinition,
  createEditToolDefinition,
  createFindToolDefinition,
  createGrepToolDefinition,
  createLsToolDefinition,
  createReadToolDefinition,
  createWriteToolDefinition,
  DEFAULT_MAX_BYTES,
  type ExtensionAPI,
  type ExtensionContext,
  truncateHead,
} from "@mariozechner/pi-coding-agent";
import { type Sandbox, SandboxClient } from "@pi-sandbox/client";
import { WORKSPACE } from "./paths.ts";
import {
  bashOperations,
  editOperations,
  findOperations,
  type GrepParams,
  grepInSandbox,
  lsOperations,
  readOperations,
  writeOperations,
} from "./remote.ts";
import { readSettings } from "./settings.ts";

export default function piSandbox(pi: ExtensionAPI): void {
  pi.registerFlag("sandbox-name", {
    description: "pi-sandbox: the sandbox to use (default PI_SANDBOX_NAME, else pi-<folder>)",
    type: "string",
  });
  const localCwd = process.cwd();
  let sandbox: Sandbox | undefined;
  let failure: Error | undefined;

  /** The session's sandbox; before it is there, the reason it is not (a missing variable, say). */
  const current = (): Sandbox => {
    if (sandbox) return sandbox;
    throw failure ?? new Error("pi-sandbox: the sandbox is not ready yet");
  };

  // Each tool keeps Pi's own definition (parameters, line numbering, output caps); only where its
  // operations happen changes.
  const remote = <D extends { execute: (...a: never[]) => unknown }>(make: (s: Sandbox) => D): void => {
    const shape = make(undefined as unknown as Sandbox);
    pi.registerTool({
      ...(shape as unknown as Parameters<ExtensionAPI["registerTool"]>[0]),
      execute: (...args: Parameters<Parameters<ExtensionAPI["registerTool"]>[0]["execute"]>) =>
        (make(current()) as unknown as Parameters<ExtensionAPI["registerTool"]>[0]).execute(...args),
    });
  };
  remote((s) => createBashToolDefinition(localCwd, { operations: bashOperations(s, localCwd) }));
  remote((s) => createReadToolDefinition(localCwd, { operations: readOperations(s, localCwd) }));
  remote((s) => createWriteToolDefinition(localCwd, { operations: writeOperations(s, localCwd) }));
  remote((s) => createEditToolDefinition(localCwd, { operations: editOperations(s, localCwd) }));
  remote((s) => createLsToolDefinition(localCwd, { operations: lsOperations(s, localCwd) }));
  remote((s) => createFindToolDefinition(localCwd, { operations: findOperations(s, localCwd) }));

  // Pi's grep walks files itself (ripgrep on this machine); ours runs grep in the pod.
  const grep = createGrepToolDefinition(localCwd);
  pi.registerTool({
    ...grep,
    async execute(_id, params, signal) {
      const r = await grepInSandbox(current(), localCwd, params as GrepParams, signal);
      const text = r.lines.length === 0 ? "No matches found" : r.lines.join("\n");
      const cut = truncateHead(text, { maxBytes: DEFAULT_MAX_BYTES });
      const notes = [
        cut.truncated ? `[output truncated to ${DEFAULT_MAX_BYTES} bytes]` : "",
        r.truncated ? "[grep output was capped by the sandbox]" : "",
      ].filter(Boolean);
      return {
        content: [{ type: "text", text: [cut.content, ...notes].join("\n") }],
        details: undefined,
      };
    },
  } as Parameters<ExtensionAPI["registerTool"]>[0]);

  pi.on("session_start", async (_event, ctx: ExtensionContext) => {
    try {
      const settings = readSettings(process.env, localCwd, pi.getFlag("sandbox-name") as string | undefined);
      const client = new SandboxClient({ baseUrl: settings.url, token: settings.token });
      sandbox = await client.sandboxes.create({
        name: settings.name,
        ...(settings.idleTimeoutSeconds !== undefined
          ? { idleTimeoutSeconds: settings.idleTimeoutSeconds }
          : {}),
      });
      ctx.ui.setStatus("pi-sandbox", `sandbox ${settings.name}`);
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
      ctx.ui.notify(failure.message, "error");
    }
  });

  // `!command` typed by the user runs in the sandbox too.
  pi.on("user_bash", () => ({ operations: bashOperations(current(), localCwd) }));

  // The model is told where it really works.
  pi.on("before_agent_start", (event) => {
    if (!sandbox) return;
    return {
      systemPrompt: event.systemPrompt.replace(
        `Current working directory: ${localCwd}`,
        `Current working directory: ${WORKSPACE} (a pi-sandbox sandbox, ${sandbox.info.name ?? sandbox.id})`,
      ),
    };
  });

  pi.registerCommand("sandbox", {
    description: "pi-sandbox: the sandbox, its expiry and how to open the dashboard",
    handler: async (_args, ctx) => {
      try {
        const s = current();
        const info = await s.refresh();
        ctx.ui.notify(
          [
            `sandbox ${info.name ?? ""} ${info.id} (region ${info.region}, pod ${info.pod})`,
            `expires ${info.expiresAt} (idle timeout ${info.idleTimeoutSeconds} s, max lifetime ${info.maxLifetimeSeconds} s)`,
            `dashboard: ${process.env.PI_SANDBOX_URL?.replace(/\/$/, "")}/dashboard#token=<an admin token> (the pool, leases and queue, live)`,
          ].join("\n"),
          "info",
        );
      } catch (e) {
        ctx.ui.notify((e as Error).message, "error");
      }
    },
  });
}
