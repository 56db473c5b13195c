import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { FenceMark, makeTokenCheck } from "./auth.ts";
import type { ServerConfig } from "./config.ts";
import { handleFiles } from "./file-routes.ts";
import { clearIpc, describeResidue, ipcResidue } from "./ipc.ts";
import { handlePortProxy, handlePortUpgrade, refuseUpgrade } from "./port-proxy.ts";
import { handleProcesses } from "./process-routes.ts";
import { ProcessTable } from "./process-table.ts";
import { killEveryoneElse, otherProcesses, ownsPidNamespace } from "./processes.ts";
import {
  type ExecServerErrorCode,
  encodeFrame,
  FENCE_HEADER,
  type InspectResult,
  type OutputFrame,
  EXEC_SERVER_PATHS as PATHS,
  type ResetResult,
} from "./protocol.ts";
import { parseExecBody, readBody, resolveCwd } from "./request.ts";
import { sendError, sendJson } from "./respond.ts";
import { commandEnv, type RunningCommand, startCommand } from "./run-command.ts";
import { probeCommandAccess } from "./self-protection.ts";
import { countEntries, emptyDir } from "./workspace.ts";

type ErrorCode = ExecServerErrorCode;

export interface SandboxServer {
  server: Server;
  /** Kills every running command's group and closes the listener. */
  shutdown(): Promise<void>;
  /**
   * The start-up probe (self-protection.ts): why commands could alter this server, or undefined.
   * It runs a child through the commands' spawn path, so it settling also means that path is warm.
   */
  exposure: Promise<string | undefined>;
}

export function createSandboxServer(config: ServerConfig): SandboxServer {
  const tokenOk = makeTokenCheck(config.poolToken);
  const fence = new FenceMark();
  const running = new Map<RunningCommand, number>(); // command → the fence it ran under
  const killedByShutdown = new Set<RunningCommand>();
  const processes = new ProcessTable(config.processes);
  // Why commands could tamper with this server (undefined: they cannot); /reset refuses if they can.
  const exposure = probeCommandAccess();

  /** A new holder's fence makes every command of older holders illegitimate. */
  const killOlderThan = (mark: number) => {
    for (const [cmd, f] of running) if (f < mark) cmd.kill();
    processes.killOlderThan(mark);
  };

  const authorize = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (tokenOk(req.headers.authorization)) return true;
    sendError(res, 401, "unauthenticated", "missing or wrong pool token");
    return false;
  };

  const checkFence = (req: IncomingMessage, res: ServerResponse): number | undefined => {
    const verdict = fence.check(req.headers[FENCE_HEADER]);
    if (!verdict.ok) {
      sendError(
        res,
        verdict.status,
        verdict.status === 409 ? "stale_lease" : "invalid_request",
        verdict.message,
      );
      return undefined;
    }
    if (verdict.raised) killOlderThan(verdict.fence);
    return verdict.fence;
  };

  async function handleExec(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorize(req, res)) return;
    const myFence = checkFence(req, res);
    if (myFence === undefined) return;
    const raw = await readBody(req);
    if (!raw.ok) {
      sendError(res, raw.status, raw.status === 413 ? "payload_too_large" : "invalid_request", raw.message);
      return;
    }
    const body = parseExecBody(raw.value, config.workspace);
    if (!body.ok) {
      sendError(res, body.status, "invalid_request", body.message);
      return;
    }
    const cwd = await resolveCwd(body.value.cwd, config.workspace);
    if (!cwd.ok) {
      sendError(res, cwd.status, "invalid_request", cwd.message);
      return;
    }
    // Fence check happened before the body was read; a newer holder may have arrived meanwhile.
    if (myFence < fence.highest) {
      sendError(res, 409, "stale_lease", `fencing token ${myFence} was superseded by ${fence.highest}`);
      return;
    }

    let clientGone = false;
    let paused = false;
    let cmd: RunningCommand | undefined;
    const write = (frame: OutputFrame) => {
      if (clientGone || res.writableEnded) return;
      // A slow reader pauses the pipes (bounded memory); the command then blocks on write.
      if (!res.write(encodeFrame(frame)) && cmd && !paused) {
        paused = true;
        cmd.pause();
        res.once("drain", () => {
          paused = false;
          cmd?.resume();
        });
      }
    };
    const started = await startCommand({
      program: { command: body.value.command },
      timeoutMs: body.value.timeoutMs,
      cwd: cwd.value,
      env: commandEnv(config.workspace, body.value.env),
      stdin: body.value.stdin,
      outputCapBytes: config.outputCapBytes,
      onChunk: (stream, chunk) => write({ type: stream, data: chunk.toString("base64") }),
    });
    if (!started.ok) {
      sendError(res, 500, "internal", started.message);
      return;
    }
    cmd = started.running;
    running.set(cmd, myFence);
    const onGone = () => {
      if (res.writableFinished) return;
      clientGone = true;
      cmd?.kill();
    };
    res.on("close", onGone);
    if (res.destroyed || req.socket.destroyed) onGone();
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    res.flushHeaders();
    const result = await cmd.done;
    running.delete(cmd);
    if (clientGone) return;
    if (killedByShutdown.has(cmd)) {
      // The pod is going away under the command: that is a sandbox failure, not the command's
      // own outcome, so end the stream without a result (the agent answers sandbox_failed)
      // instead of reporting an ordinary "killed by SIGKILL".
      killedByShutdown.delete(cmd);
      res.destroy();
      return;
    }
    res.end(encodeFrame({ type: "result", ...result }));
  }

  async function handleReset(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorize(req, res)) return;
    if (checkFence(req, res) === undefined) return;
    req.resume();
    if (!ownsPidNamespace()) {
      // Killing "every other process" outside a sandbox would take the host down with it.
      sendError(
        res,
        403,
        "reset_refused",
        "refusing to reset: this server does not run in its own PID namespace",
      );
      return;
    }
    const exposed = await exposure;
    if (exposed !== undefined) {
      // A command of the previous holder could have rewritten this server: its "clean" proves nothing.
      sendError(res, 403, "reset_refused", `refusing to reset: commands can alter this server: ${exposed}`);
      return;
    }
    for (const cmd of running.keys()) cmd.kill();
    processes.killAll();
    const { killed, remaining } = await killEveryoneElse();
    const removed = (await emptyDir(config.workspace)) + (await emptyDir(config.tmpDir));
    // After the kill: no process is left to re-create or hold them.
    const ipcRemoved = await clearIpc();
    if (remaining > 0) {
      sendError(res, 500, "internal", `${remaining} processes survived the reset`);
      return;
    }
    const left = describeResidue(await ipcResidue());
    if (left !== undefined) {
      sendError(res, 500, "internal", `left after the reset: ${left}`);
      return;
    }
    const reset: ResetResult = { killed, removed, ipcRemoved };
    sendJson(res, 200, reset);
  }

  async function handleInspect(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorize(req, res)) return;
    req.resume();
    const ipc = await ipcResidue();
    const inspect: InspectResult = {
      processes: otherProcesses().length,
      workspaceEntries: await countEntries(config.workspace),
      tmpEntries: await countEntries(config.tmpDir),
      shmEntries: ipc.shmEntries,
      sysvIpcObjects: ipc.sysvObjects,
      mqueues: ipc.mqueues,
      serverExposed: (await exposure) !== undefined,
      fence: fence.highest,
    };
    sendJson(res, 200, inspect);
  }

  async function handleFileRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorize(req, res)) return;
    // A holder whose lease was taken over must not touch the new holder's files.
    if (checkFence(req, res) === undefined) {
      req.resume();
      return;
    }
    await handleFiles(req, res, config.workspace, (r, status, code, message) =>
      sendError(r, status, code as ErrorCode, message),
    );
  }

  async function handleProcessRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const myFence = authorize(req, res) ? checkFence(req, res) : undefined;
    if (myFence === undefined) {
      req.resume();
      return;
    }
    await handleProcesses(req, res, {
      table: processes,
      config,
      fence: myFence,
      superseded: () => myFence < fence.highest,
    });
  }

  function handlePortRequest(req: IncomingMessage, res: ServerResponse): void {
    // The same pool token and fence as every other route: a holder whose lease passed on must not
    // reach the next holder's servers.
    if (!authorize(req, res) || checkFence(req, res) === undefined) {
      req.resume();
      return;
    }
    handlePortProxy(req, res, { ownPort: config.port });
  }

  const route = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path === PATHS.health && (req.method === "GET" || req.method === "HEAD")) {
      req.resume();
      sendJson(res, 200, { ok: true });
    } else if (path === PATHS.exec && req.method === "POST") await handleExec(req, res);
    else if (path === PATHS.reset && req.method === "POST") await handleReset(req, res);
    else if (path === PATHS.inspect && req.method === "GET") await handleInspect(req, res);
    else if (path === PATHS.files) await handleFileRequest(req, res);
    else if (path === PATHS.processes || path.startsWith(`${PATHS.processes}/`))
      await handleProcessRequest(req, res);
    else if (path.startsWith(`${PATHS.ports}/`)) handlePortRequest(req, res);
    else {
      req.resume();
      sendError(res, 404, "not_found", `no route ${req.method} ${path}`);
    }
  };

  const server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendError(res, 500, "internal", e instanceof Error ? e.message : String(e));
      else res.destroy();
    });
  });
  // A WebSocket through a port link: the same pool token and fence as every route, then raw bytes.
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (!path.startsWith(`${PATHS.ports}/`))
      return refuseUpgrade(socket, 404, "not_found", `no upgrade at ${path}`);
    if (!tokenOk(req.headers.authorization))
      return refuseUpgrade(socket, 401, "unauthenticated", "missing or wrong pool token");
    const verdict = fence.check(req.headers[FENCE_HEADER]);
    if (!verdict.ok)
      return refuseUpgrade(
        socket,
        verdict.status,
        verdict.status === 409 ? "stale_lease" : "invalid_request",
        verdict.message,
      );
    if (verdict.raised) killOlderThan(verdict.fence);
    handlePortUpgrade(req, socket, head, { ownPort: config.port });
  });
  // Commands may run for up to 15 minutes while streaming nothing.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 30_000;

  return {
    server,
    exposure,
    shutdown: () =>
      new Promise<void>((resolve) => {
        for (const cmd of running.keys()) {
          killedByShutdown.add(cmd);
          cmd.kill();
        }
        processes.killAll();
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, 2000).unref();
      }),
  };
}
