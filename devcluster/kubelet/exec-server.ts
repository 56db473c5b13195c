import type { ChildProcess } from "node:child_process";
import type { IncomingMessage } from "node:http";
import { createServer, type Server } from "node:https";
import { constants } from "node:os";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { type WebSocket, WebSocketServer } from "ws";
import type { Container } from "./container.ts";
import { logOptions, serveContainerLog } from "./container-logs.ts";
import { type ExecProcess, killExec, startExec } from "./exec-process.ts";
import type { ExecProtocol } from "./types.ts";

/** Subprotocols whose channel 3 carries a JSON Status (v4 and v5), best first. */
const PROTOCOLS: ExecProtocol[] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
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
) => { ok: true; sandbox: Container } | { ok: false; message: string };

export type LogLookup = (
  namespace: string,
  pod: string,
  container: string,
) => { ok: true; path: string; running: () => boolean } | { ok: false; message: string };

function names(m: RegExpExecArray): [string, string, string] {
  const [, ns = "", pod = "", container = ""] = m.map((s) => decodeURIComponent(s));
  return [ns, pod, container];
}

export interface ExecServer {
  port: number;
  close(): Promise<void>;
}

/** The kubelet's serving certificate and the CA its clients' certificates must chain to. */
export interface ExecServerTls {
  cert: string;
  key: string;
  clientCA: string;
}

/**
 * The kubelet's exec endpoint as a real kubelet serves it: HTTPS, clients authenticated by a
 * certificate from `clientCA` (the API server's `--kubelet-client-certificate`; a connection
 * without one fails the TLS handshake), `/exec/{ns}/{pod}/{container}?command=…&input=&output=&error=&tty=`
 * over WebSocket with the v5/v4 channel protocols. Commands run with `runc exec`.
 */
export async function startExecServer(opts: {
  tls: ExecServerTls;
  /** Where `runc exec` writes each process's host PID (to kill it when its caller goes). */
  scratchDir: string;
  lookup: SandboxLookup;
  log: (msg: string) => void;
  /** Offered subprotocols, best first (default v5, v4). */
  protocols?: ExecProtocol[];
  /** The log file of a container (`GET /containerLogs/{ns}/{pod}/{container}`, what `pods/log` reads). */
  logs?: LogLookup;
}): Promise<ExecServer> {
  const protocols = opts.protocols ?? PROTOCOLS;
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (offered) => protocols.find((p) => offered.has(p)) ?? false,
  });
  const children = new Set<ExecProcess>();
  // Shutting down: sockets are dropped without a status frame, as when a real kubelet goes away.
  const state = { closing: false };
  const server: Server = createServer(
    {
      cert: opts.tls.cert,
      key: opts.tls.key,
      ca: opts.tls.clientCA,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    },
    (req, res) => {
      const url = new URL(req.url ?? "/", "https://kubelet");
      const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      const target = m && req.method === "GET" ? names(m) : undefined;
      const found = target && opts.logs ? opts.logs(...target) : undefined;
      if (!found) {
        res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n");
        return;
      }
      if (!found.ok) {
        res.writeHead(404, { "content-type": "text/plain" }).end(`${found.message}\n`);
        return;
      }
      const logOpts = logOptions(url.searchParams, found.running);
      if (typeof logOpts === "string") {
        res.writeHead(400, { "content-type": "text/plain" }).end(`${logOpts}\n`);
        return;
      }
      void serveContainerLog(
        res,
        found.path,
        logOpts,
        `container "${target?.[2] ?? ""}" has not started yet`,
      );
    },
  );
  server.on("tlsClientError", () => {});
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const reject = (code: number, text: string) => {
      socket.end(
        `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${text}\n`,
      );
    };
    // rejectUnauthorized already refused handshakes without a valid client certificate.
    if (!(req.socket as TLSSocket).authorized) return reject(401, "Unauthorized");
    const url = new URL(req.url ?? "/", "https://kubelet");
    const m = /^\/exec\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m) return reject(404, "Not Found");
    const [, ns = "", pod = "", container = ""] = m.map((s) => decodeURIComponent(s));
    const command = url.searchParams.getAll("command");
    const flag = (k: string) => ["1", "true"].includes(url.searchParams.get(k) ?? "");
    // The names the API server uses toward a kubelet (its own clients say stdin/stdout/stderr).
    const streams = { stdin: flag("input"), stdout: flag("output"), stderr: flag("error") };
    if (command.length === 0) return reject(400, "Bad Request: no command specified");
    if (!streams.stdin && !streams.stdout && !streams.stderr) {
      return reject(400, "Bad Request: you must specify at least 1 of stdin, stdout, stderr");
    }
    if (flag("tty")) return reject(400, "Bad Request: devcluster does not support tty exec");
    const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    if (!protocols.some((p) => offered.includes(p))) {
      return reject(
        400,
        `Bad Request: none of the offered subprotocols is supported (${protocols.join(", ")})`,
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
      for (const c of children) killExec(c);
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
  opts: { lookup: SandboxLookup; log: (msg: string) => void; scratchDir: string },
  children: Set<ExecProcess>,
  state: { closing: boolean },
): void {
  const v5 = ws.protocol === "v5.channel.k8s.io";
  const found = opts.lookup(req.ns, req.pod, req.container);
  if (!found.ok) {
    sendStatus(ws, internalError(found.message));
    ws.close(1000);
    return;
  }
  const container = found.sandbox;
  let proc: ExecProcess;
  try {
    proc = startExec(container, req.command, opts.scratchDir);
  } catch (err) {
    sendStatus(ws, internalError(`cannot exec in container: ${(err as Error).message}`));
    ws.close(1000);
    return;
  }
  const child: ChildProcess = proc.child;
  children.add(proc);
  // runc's own last words when it could not start the process (kept to map them to 126/127).
  let errTail = "";
  child.stderr?.on("data", (d: Buffer) => {
    errTail = (errTail + d.toString("utf8")).slice(-1024);
  });
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
    if (!finished) killExec(proc);
  });
  ws.on("error", () => {});

  child.on("error", (err) => {
    if (finished) return;
    finished = true;
    children.delete(proc);
    unblock();
    sendStatus(ws, internalError(`cannot exec in container: ${err.message}`));
    ws.close(1000);
  });
  child.on("close", (code, signal) => {
    if (finished) return;
    finished = true;
    children.delete(proc);
    if (state.closing) return;
    unblock();
    let exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
    if (container.checkOom()) {
      // An OOM kill anywhere in the container takes all of it down (as memory.oom.group does), so
      // this command is a casualty too, whatever its own exit status.
      sendStatus(
        ws,
        internalError(
          `container "${req.container}" in pod ${req.ns}/${req.pod} was OOMKilled: the command exceeded the container's memory limit`,
        ),
      );
      ws.close(1000);
      return;
    }
    // runc could not start the process: shell semantics (127 not found, 126 not executable).
    if (exitCode === 255 && /level=error msg="exec failed/.test(errTail)) {
      exitCode = /executable file not found|no such file or directory/.test(errTail) ? 127 : 126;
    }
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

function signalNumber(sig: NodeJS.Signals): number {
  return constants.signals[sig] ?? 0;
}
