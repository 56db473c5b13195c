import { createSandboxServer } from "./app.ts";
import { configFromEnv } from "./config.ts";
import { guardInspectorSignal } from "./self-protection.ts";

// Entry point of the sandbox image: `/opt/sandbox-server/node /opt/sandbox-server/server.mjs`
// (an execute-only node: self-protection.ts). Before anything else: a command must never be able
// to open the inspector in here.
guardInspectorSignal();
const parsed = configFromEnv(process.env);
if (!parsed.ok) {
  process.stderr.write(`sandbox-server: ${parsed.message}\n`);
  process.exit(2);
}
const { config } = parsed;
// Nothing the command runs should inherit the token, and nothing below needs it from the env again.
delete process.env.POOL_TOKEN;

const sandbox = createSandboxServer(config);
sandbox.server.on("error", (e) => {
  process.stderr.write(`sandbox-server: ${e.message}\n`);
  process.exit(1);
});
// The port opens after the start-up probe has run a child through the commands' spawn path: the
// first real command on a fresh pod then finds that path loaded and compiled instead of paying for
// it on its caller's response path (the probe is that warm-up; no throwaway command of its own).
await sandbox.exposure;
sandbox.server.listen(config.port, config.listenHost, () => {
  const addr = sandbox.server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.port;
  process.stdout.write(`${JSON.stringify({ msg: "listening", host: config.listenHost, port })}\n`);
});

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  process.stdout.write(`${JSON.stringify({ msg: "stopping", signal })}\n`);
  sandbox.shutdown().then(() => process.exit(0));
};
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
