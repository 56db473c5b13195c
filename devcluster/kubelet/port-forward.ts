import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { EgressProxyRoute } from "./types.ts";

/**
 * The forwarder runs as an unprivileged uid that may not be able to reach the checkout (a clone
 * under a 0700 directory such as /root or a mkdtemp): its source goes in as `-e`, and the Node
 * binary is executed through a descriptor the kubelet opened (/proc/self/fd/N), not by path.
 */
const FORWARDER_SOURCE = readFileSync(new URL("./netns-forwarder.mjs", import.meta.url), "utf8");
/** The binary's descriptor in the forwarder's process (0-2 stdio, 3 the IPC channel). */
const NODE_FD = 4;
const START_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 6_000;
/** The forwarder holds no privilege: it only connects to the pod's own address. */
const FORWARDER_UID = 65534;

interface Pending {
  resolve: (s: Socket | undefined) => void;
  timer: NodeJS.Timeout;
}

/** Where a pod reaches the egress proxy from inside its namespace when none is named. */
const DEFAULT_EGRESS_POD_PORT = 3128;

/**
 * A pod's address on the host: the kubelet binds the pod's declared ports on its pod IP (before
 * the container starts, exclusively, so no other process can take them) and splices every
 * connection to a socket the netns forwarder opened inside the pod's network namespace. With an
 * egress proxy, the other direction too, to that one destination: a connection to
 * 127.0.0.1:podPort inside the pod is opened to the proxy from the pod IP (its identity there).
 */
export class PortForward {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private forwarder: ChildProcess | undefined;
  private started: Promise<boolean> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(
    readonly ip: string,
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
    const nodeFd = openSync(process.execPath, "r");
    const child = spawn(
      "nsenter",
      [
        `--net=/proc/${pid}/ns/net`,
        "--",
        "setpriv",
        `--reuid=${FORWARDER_UID}`,
        `--regid=${FORWARDER_UID}`,
        "--clear-groups",
        "--no-new-privs",
        "--pdeathsig=SIGKILL",
        "--",
        `/proc/self/fd/${NODE_FD}`,
        "--input-type=module",
        "-e",
        FORWARDER_SOURCE,
      ],
      {
        stdio: ["ignore", "ignore", "pipe", "ipc", nodeFd],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      },
    );
    closeSync(nodeFd);
    this.forwarder = child;
    child.stderr?.on("data", (d: Buffer) => this.log(`port forwarder ${this.ip}: ${d.toString().trim()}`));
    child.on("message", (msg: unknown, handle: unknown) => this.onMessage(msg, handle));
    child.on("error", () => {});
    this.started = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), START_TIMEOUT_MS);
      child.on("message", (m: unknown) => {
        if ((m as { ready?: boolean })?.ready) {
          clearTimeout(timer);
          if (this.egress) child.send({ egressPort: this.egress.podPort ?? DEFAULT_EGRESS_POD_PORT });
          resolve(true);
        }
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(false);
        for (const [, p] of this.pending) p.resolve(undefined);
        this.pending.clear();
      });
    });
    return this.started;
  }

  private onMessage(msg: unknown, handle: unknown): void {
    const m = msg as {
      id?: number;
      ok?: boolean;
      outbound?: boolean;
      outboundListening?: boolean;
      message?: string;
    };
    if (m?.outbound) return void this.outward(handle as Socket | undefined);
    if (m?.outboundListening === false)
      this.log(`port forwarder ${this.ip}: no egress listener in the pod: ${m.message ?? ""}`);
    if (typeof m?.id !== "number") return;
    const p = this.pending.get(m.id);
    if (!p) {
      (handle as Socket | undefined)?.destroy();
      return;
    }
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    p.resolve(m.ok ? (handle as Socket) : undefined);
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
    const child = this.forwarder;
    if (!child || !(await this.started) || !child.connected) return undefined;
    const id = this.nextId++;
    return new Promise<Socket | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, CONNECT_TIMEOUT_MS);
      this.pending.set(id, { resolve, timer });
      child.send({ id, host: this.ip, port });
    });
  }

  /** Stops the forwarder (the container is gone or restarting); the ports stay bound. */
  detach(): void {
    const f = this.forwarder;
    this.forwarder = undefined;
    this.started = undefined;
    if (f && f.exitCode === null) f.kill("SIGKILL");
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
