import type { ChildProcess } from "node:child_process";
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { constants } from "node:os";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import { spawnInSandbox } from "./exec-process.ts";
import type { Sandbox } from "./sandbox.ts";

/** Subprotocols whose channel 3 carries a JSON Status (v4 and v5), best first. */
const PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const CH_STDIN = 0;
const CH_STDOUT = 1;
const CH_STDERR = 2;
const CH_STATUS = 3;
const CH_RESIZE = 4;
const CH_CLOSE = 255;
/** Output is paused while more than HIGH bytes are queued on the socket, resumed below LOW. */
const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;

export type SandboxLookup = (
  namespace: string,
  pod: string,
  container: string,
) => { ok: true; sandbox: Sandbox } | { ok: false; message: string };

export interface ExecServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The kubelet's exec endpoint: `/exec/{ns}/{pod}/{container}?command=…&stdin=&stdout=&stderr=`
 * over WebSocket with the Kubernetes channel protocol, authenticated with the kubelet token.
 */
export async function startExecServer(opts: {
  token: string;
  lookup: SandboxLookup;
  log: (msg: string) => void;
}): Promise<ExecServer> {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (offered) => PROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const children = new Set<ChildProcess>();
  // Shutting down: sockets are dropped without a status frame, as when a real kubelet goes away.
  const state = { closing: false };
  const server: Server = createServer((_req, res) => {
    res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n");
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const reject = (code: number, text: string) => {
      socket.end(
        `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${text}\n`,
      );
    };
    if (!authorized(req.headers.authorization, opts.token)) return reject(401, "Unauthorized");
    const url = new URL(req.url ?? "/", "http://kubelet");
    const m = /^\/exec\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m) return reject(404, "Not Found");
    const [, ns = "", pod = "", container = ""] = m.map((s) => decodeURIComponent(s));
    const command = url.searchParams.getAll("command");
    const flag = (k: string) => ["1", "true"].includes(url.searchParams.get(k) ?? "");
    const streams = { stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr") };
    if (command.length === 0) return reject(400, "Bad Request: no command specified");
    if (!streams.stdin && !streams.stdout && !streams.stderr) {
      return reject(400, "Bad Request: you must specify at least 1 of stdin, stdout, stderr");
    }
    const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    if (!PROTOCOLS.some((p) => offered.includes(p))) {
      return reject(
        400,
        `Bad Request: none of the offered subprotocols is supported (${PROTOCOLS.join(", ")})`,
      );
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      runExec(ws, { ns, pod, container, command, ...streams }, opts, children, state);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    close: async () => {
      state.closing = true;
      for (const ws of wss.clients) ws.terminate();
      for (const c of children) killGroup(c);
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface ExecRequest {
  ns: string;
  pod: string;
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

function runExec(
  ws: WebSocket,
  req: ExecRequest,
  opts: { lookup: SandboxLookup; log: (msg: string) => void },
  children: Set<ChildProcess>,
  state: { closing: boolean },
): void {
  const v5 = ws.protocol === "v5.channel.k8s.io";
  const found = opts.lookup(req.ns, req.pod, req.container);
  if (!found.ok) {
    sendStatus(ws, internalError(found.message));
    ws.close(1000);
    return;
  }
  let child: ChildProcess;
  try {
    child = spawnInSandbox(found.sandbox, req.command);
  } catch (err) {
    sendStatus(ws, internalError(`cannot exec in container: ${(err as Error).message}`));
    ws.close(1000);
    return;
  }
  children.add(child);
  let finished = false;

  let inFlight = 0;
  let paused = false;
  const outputs = [
    { stream: child.stdout, channel: CH_STDOUT, wanted: req.stdout },
    { stream: child.stderr, channel: CH_STDERR, wanted: req.stderr },
  ];
  const pauseAll = () => {
    paused = true;
    for (const o of outputs) o.stream?.pause();
  };
  const resumeAll = () => {
    paused = false;
    for (const o of outputs) o.stream?.resume();
  };
  for (const o of outputs) {
    o.stream?.on("data", (chunk: Buffer) => {
      if (!o.wanted || ws.readyState !== ws.OPEN) return;
      const frame = Buffer.allocUnsafe(chunk.length + 1);
      frame[0] = o.channel;
      chunk.copy(frame, 1);
      inFlight += frame.length;
      ws.send(frame, { binary: true }, () => {
        inFlight -= frame.length;
        if (paused && inFlight < LOW_WATER) resumeAll();
      });
      if (inFlight > HIGH_WATER) pauseAll();
    });
  }

  const stdin = child.stdin;
  stdin?.on("error", () => {}); // EPIPE when the command exits before reading all input
  if (!req.stdin) stdin?.end();

  // Stdin backpressure: stop reading the socket while the command's stdin pipe is full. Reading
  // must resume whenever stdin can no longer drain (ended, closed), or the close handshake
  // would never be read: 'drain' is not emitted once end() has been called.
  let stdinBlocked = false;
  const unblock = () => {
    if (!stdinBlocked) return;
    stdinBlocked = false;
    ws.resume();
  };
  stdin?.on("drain", unblock);
  stdin?.on("close", unblock);

  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (!isBinary || data.length === 0) return;
    const channel = data[0];
    if (channel === CH_STDIN && req.stdin && stdin && !stdin.writableEnded) {
      if (!stdin.write(data.subarray(1)) && !stdinBlocked) {
        stdinBlocked = true;
        ws.pause();
      }
    } else if (channel === CH_CLOSE && v5 && data[1] === CH_STDIN) {
      stdin?.end();
      unblock();
    }
    // CH_RESIZE (and anything else) is ignored: devcluster runs without a TTY.
    void CH_RESIZE;
  });

  ws.on("close", () => {
    // Client gone (or proxy closed): the command must not outlive its caller.
    if (!finished) killGroup(child);
  });
  ws.on("error", () => {});

  child.on("error", (err) => {
    if (finished) return;
    finished = true;
    children.delete(child);
    unblock();
    sendStatus(ws, internalError(`cannot exec in container: ${err.message}`));
    ws.close(1000);
  });
  child.on("close", (code, signal) => {
    if (finished) return;
    finished = true;
    children.delete(child);
    if (state.closing) return;
    unblock();
    const exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
    opts.log(`exec ${req.ns}/${req.pod}/${req.container} ${JSON.stringify(req.command)} → ${exitCode}`);
    sendStatus(ws, exitCode === 0 ? { metadata: {}, status: "Success" } : nonZeroExit(exitCode));
    ws.close(1000);
  });
}

function sendStatus(ws: WebSocket, status: object): void {
  if (ws.readyState !== ws.OPEN) return;
  const body = Buffer.from(JSON.stringify(status));
  ws.send(Buffer.concat([Buffer.from([CH_STATUS]), body]), { binary: true });
}

function nonZeroExit(code: number): object {
  return {
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: exit status ${code}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(code) }] },
  };
}

function internalError(message: string): object {
  return {
    metadata: {},
    status: "Failure",
    message: `Internal error occurred: ${message}`,
    reason: "InternalError",
    details: { causes: [{ message }] },
    code: 500,
  };
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // group already gone
  }
}

function authorized(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? "");
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function signalNumber(sig: NodeJS.Signals): number {
  return constants.signals[sig] ?? 0;
}
