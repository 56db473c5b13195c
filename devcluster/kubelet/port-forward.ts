import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EgressProxyRoute } from "./types.ts";

/** The forwarder host's source goes in as `-e`: nothing to find on disk at run time. */
const FORWARDER_SOURCE = readFileSync(new URL("./netns-forwarder.pl", import.meta.url), "utf8");
const START_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 6_000;
/** The forwarder holds no privilege: it only connects to the pod's own address and to our socket. */
const FORWARDER_UID = 65534;
/** What a forwarder writes first on each connection to our socket: 8 hex digits (0 = egress) and "\n". */
const HEADER_BYTES = 9;
/** The header of the forwarder's control connection (the other ids are ours, counted from 1). */
const CONTROL_ID = 0xffffffff;

/** A started forwarder: its process group, its control connection once it dialled in. */
interface Forwarder {
  pgid: number;
  control: Socket | undefined;
  /** The control connection closed: every process of the group has exited. */
  gone: boolean;
}

interface Pending {
  resolve: (s: Socket | undefined) => void;
  timer: NodeJS.Timeout;
}

/** Where a pod reaches the egress proxy from inside its namespace when none is named. */
const DEFAULT_EGRESS_POD_PORT = 3128;

let socketDir: string | undefined;
let socketSeq = 0;
let socketsInUse = 0;
/**
 * The kubelet's Unix sockets the forwarders dial (a path is not bound to a network namespace):
 * a directory others may traverse but not list, each socket owned by the forwarder's uid, 0600.
 * The directory exists while a socket is in use (releaseSocketPath), so a stopped devcluster
 * leaves nothing in $TMPDIR.
 */
function forwarderSocketPath(ip: string): string {
  if (!socketDir) {
    socketDir = mkdtempSync(join(tmpdir(), "devcluster-fwd-"));
    chmodSync(socketDir, 0o711);
  }
  socketsInUse++;
  return join(socketDir, `${ip}-${++socketSeq}.sock`);
}

function releaseSocketPath(path: string): void {
  rmSync(path, { force: true });
  if (--socketsInUse > 0 || !socketDir) return;
  rmSync(socketDir, { recursive: true, force: true });
  socketDir = undefined;
}

/**
 * The kubelet's one forwarder host (`netns-forwarder.pl` as root, dying with the kubelet): each
 * pod's forwarder is a fork of it that enters the pod's network namespace and drops to uid 65534.
 * Spawned on first use; a fork of the kubelet's own (large) Node process per pod cost more CPU
 * than the whole forwarder.
 */
export class ForwarderHost {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, (r: { pid: number } | { error: string }) => void>();
  private seq = 0;
  private closed = false;

  constructor(private readonly log: (m: string) => void) {}

  /** Starts a forwarder for `ip` in the network namespace of `pid`, reporting to `socketPath`. */
  start(
    pid: number,
    ip: string,
    socketPath: string,
    egressPort: number,
  ): Promise<{ pid: number } | { error: string }> {
    if (this.closed) return Promise.resolve({ error: "the kubelet is closing" });
    const child = this.spawnOnce();
    if (!child.stdin?.writable) return Promise.resolve({ error: "the forwarder host is gone" });
    const req = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        resolve({ error: "the forwarder host did not answer" });
      }, START_TIMEOUT_MS);
      this.pending.set(req, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      child.stdin?.write(`${req} ${pid} ${ip} ${socketPath} ${egressPort}\n`);
    });
  }

  private spawnOnce(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const child = spawn("setpriv", ["--pdeathsig=SIGKILL", "--", "perl", "-e", FORWARDER_SOURCE], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    this.child = child;
    child.on("error", (e) => this.log(`port forwarder host: ${e.message}`));
    child.stdin?.on("error", () => {});
    child.stderr?.on("data", (d: Buffer) => this.log(`port forwarder: ${d.toString().trim()}`));
    let buffered = "";
    child.stdout?.on("data", (d: Buffer) => {
      buffered += d.toString();
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const m = /^(started|failed) (\d+) ?(.*)$/.exec(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        const done = m ? this.pending.get(Number(m[2])) : undefined;
        if (!m || !done) continue;
        this.pending.delete(Number(m[2]));
        const pid = Number(m[3]);
        done(m[1] === "started" && Number.isInteger(pid) && pid > 1 ? { pid } : { error: m[3] || "no pid" });
      }
    });
    child.once("exit", () => {
      for (const [, done] of this.pending) done({ error: "the forwarder host exited" });
      this.pending.clear();
    });
    return child;
  }

  /** Ends the host (its forwarders were killed by their pods' detach()). */
  close(): void {
    this.closed = true;
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

/**
 * A pod's address on the host: the kubelet binds the pod's declared ports on its pod IP (before
 * the container starts, exclusively, so no other process can take them) and splices every
 * connection to one the netns forwarder opened inside the pod's network namespace and brought to
 * the kubelet's Unix socket. With an egress proxy, the other direction too, to that one
 * destination: a connection to 127.0.0.1:podPort inside the pod is opened to the proxy from the
 * pod IP (its identity there).
 */
export class PortForward {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  /** The forwarder's process group and its control connection, once it dialled in. */
  private forwarder: Forwarder | undefined;
  private onControl: ((s: Socket | undefined) => void) | undefined;
  private socketServer: Server | undefined;
  private socketPath: string | undefined;
  private started: Promise<boolean> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** Counts attach() calls: a start that a detach() overtook gives up. */
  private attachments = 0;

  constructor(
    readonly ip: string,
    private readonly host: ForwarderHost,
    private readonly log: (m: string) => void,
    private readonly egress?: EgressProxyRoute,
  ) {}

  /** Binds every port on the pod IP; false (and nothing left bound) if one is taken. */
  async listen(ports: number[]): Promise<boolean> {
    for (const port of ports) {
      const srv = createServer({ pauseOnConnect: true }, (s) => this.accept(s, port));
      const ok = await new Promise<boolean>((resolve) => {
        srv.once("error", () => resolve(false));
        srv.listen({ host: this.ip, port, exclusive: true }, () => resolve(true));
      });
      if (!ok) {
        await this.close();
        this.closed = false;
        return false;
      }
      this.servers.push(srv);
    }
    return true;
  }

  /** Starts the forwarder in the network namespace of `pid` (the container's init). */
  attach(pid: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const started = this.start(pid, ++this.attachments);
    this.started = started;
    return started;
  }

  private async start(pid: number, attachment: number): Promise<boolean> {
    const path = forwarderSocketPath(this.ip);
    const server = createServer((s) => this.fromForwarder(s));
    const listening = await new Promise<boolean>((resolve) => {
      server.once("error", (e) => {
        this.log(`port forwarder ${this.ip}: cannot listen on ${path}: ${e.message}`);
        resolve(false);
      });
      server.listen(path, () => resolve(true));
    });
    if (!listening || this.closed || attachment !== this.attachments) {
      server.close();
      releaseSocketPath(path);
      return false;
    }
    chownSync(path, FORWARDER_UID, FORWARDER_UID);
    chmodSync(path, 0o600);
    this.socketServer = server;
    this.socketPath = path;
    const egressPort = this.egress ? (this.egress.podPort ?? DEFAULT_EGRESS_POD_PORT) : 0;
    const control = new Promise<Socket | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), START_TIMEOUT_MS);
      this.onControl = (s) => {
        clearTimeout(timer);
        resolve(s);
      };
    });
    const started = await this.host.start(pid, this.ip, path, egressPort);
    if ("error" in started) {
      this.log(`port forwarder ${this.ip}: ${started.error}`);
      this.onControl?.(undefined);
      return false;
    }
    if (this.closed || attachment !== this.attachments) {
      killGroup(started.pid);
      return false;
    }
    const fwd: Forwarder = { pgid: started.pid, control: undefined, gone: false };
    this.forwarder = fwd;
    const sock = await control;
    if (!sock || this.forwarder !== fwd) {
      sock?.destroy();
      return false;
    }
    fwd.control = sock;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), START_TIMEOUT_MS);
      let buffered = "";
      sock.on("data", (d: Buffer) => {
        buffered += d.toString();
        for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line === "ready") {
            clearTimeout(timer);
            resolve(true);
          } else if (line.startsWith("fail ")) this.settle(Number(line.slice(5)), undefined);
          else if (line.startsWith("egress-fail "))
            this.log(`port forwarder ${this.ip}: no egress listener in the pod: ${line.slice(12)}`);
        }
      });
      // The forwarder exited (or was killed): nothing more will connect for us.
      sock.once("close", () => {
        clearTimeout(timer);
        resolve(false);
        if (fwd.control === sock) fwd.control = undefined;
        fwd.gone = true;
        for (const [, p] of this.pending) p.resolve(undefined);
        this.pending.clear();
      });
      sock.resume();
    });
  }

  /** A connection from the forwarder: its header says which of our requests it answers (0: egress). */
  private fromForwarder(sock: Socket): void {
    sock.on("error", () => {});
    const timer = setTimeout(() => sock.destroy(), CONNECT_TIMEOUT_MS);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      if (head.length < HEADER_BYTES) return;
      sock.off("data", onData);
      sock.pause();
      clearTimeout(timer);
      const rest = head.subarray(HEADER_BYTES);
      if (rest.length > 0) sock.unshift(rest);
      const id = Number.parseInt(head.subarray(0, HEADER_BYTES - 1).toString(), 16);
      if (id === 0) return this.outward(sock);
      if (id === CONTROL_ID) {
        // Only the first: a second control connection is nobody we started.
        const take = this.onControl;
        this.onControl = undefined;
        return take ? take(sock) : void sock.destroy();
      }
      if (!this.settle(id, sock)) sock.destroy();
    };
    sock.on("data", onData);
  }

  /** Hands `sock` (undefined: no connection) to the request `id`; false if nobody waits for it any more. */
  private settle(id: number, sock: Socket | undefined): boolean {
    const p = this.pending.get(id);
    if (!p) return false;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(sock);
    return true;
  }

  /** A connection the pod opened to its egress listener: on to the proxy, from the pod IP. */
  private outward(inPod: Socket | undefined): void {
    if (!inPod) return;
    if (!this.egress || this.closed) return void inPod.destroy();
    const proxy = connect({ host: "127.0.0.1", port: this.egress.port, localAddress: this.ip });
    const timer = setTimeout(() => proxy.destroy(), CONNECT_TIMEOUT_MS);
    proxy.once("connect", () => clearTimeout(timer));
    this.splice(inPod, proxy);
  }

  private async accept(client: Socket, port: number): Promise<void> {
    this.sockets.add(client);
    client.once("close", () => this.sockets.delete(client));
    client.on("error", () => {});
    const upstream = await this.open(port);
    if (!upstream || client.destroyed) {
      // Nothing listens in the pod (yet): the caller sees a reset, as for a closed port.
      upstream?.destroy();
      client.resetAndDestroy();
      return;
    }
    this.splice(client, upstream);
  }

  /** Both ways until either end closes; `client` was accepted paused. */
  private splice(client: Socket, upstream: Socket): void {
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
    }
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    // A splice must not hold back a small write until the previous one is ACKed (Nagle): with the
    // peer's delayed ACK that stalled the exec server's answer ~40 ms on kept-alive connections.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  private async open(port: number): Promise<Socket | undefined> {
    // The forwarder is known once it has started: a connection that comes first waits for that.
    if (!(await this.started)) return undefined;
    const control = this.forwarder?.control;
    if (!control?.writable) return undefined;
    const id = this.nextId++;
    return new Promise<Socket | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, CONNECT_TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      control.write(`${id} ${port}\n`);
    });
  }

  /** Stops the forwarder and the connections it copies (the container is gone or restarting); the ports stay bound. */
  detach(): void {
    this.attachments++;
    const f = this.forwarder;
    this.forwarder = undefined;
    this.started = undefined;
    this.onControl?.(undefined);
    this.onControl = undefined;
    // The forwarder and the children copying its connections, at once — only while one of them
    // still holds the control connection: a group with no process left may have had its id reused.
    if (f && !f.gone) killGroup(f.pgid);
    f?.control?.destroy();
    this.socketServer?.close();
    this.socketServer = undefined;
    if (this.socketPath) releaseSocketPath(this.socketPath);
    this.socketPath = undefined;
  }

  /** Unbinds the ports and drops every connection. */
  async close(): Promise<void> {
    this.closed = true;
    this.detach();
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.length = 0;
  }
}

function killGroup(pgid: number): void {
  // Never 0, 1 or garbage: kill(-1) would signal every process we may signal.
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // already gone
  }
}
