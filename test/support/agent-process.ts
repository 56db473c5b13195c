import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { PoolEvent, PoolSnapshot } from "../../shared/api.ts";

const HARNESS = fileURLToPath(new URL("./agent-harness.ts", import.meta.url));
const REPO = fileURLToPath(new URL("../../", import.meta.url));

let bundled: Promise<string> | undefined;
/**
 * The harness bundled once per test process (node_modules stay external): starting three replicas
 * through tsx costs seconds of transform per process on a loaded 2-core machine.
 */
function harnessEntry(): Promise<string> {
  bundled ??= (async () => {
    const out = await build({
      entryPoints: [HARNESS],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      write: false,
      outfile: "harness.mjs",
      logLevel: "silent",
    });
    const code = out.outputFiles[0]?.contents;
    if (!code) throw new Error("esbuild produced no harness bundle");
    // Named by content: concurrent test processes share one file and old versions do not pile up.
    const hash = createHash("sha256").update(code).digest("hex").slice(0, 16);
    const dir = join(REPO, "dist", "agent-harness");
    const outfile = join(dir, `harness-${hash}.mjs`);
    if (!existsSync(outfile)) {
      mkdirSync(dir, { recursive: true });
      const tmp = `${outfile}.${process.pid}.tmp`;
      writeFileSync(tmp, code);
      renameSync(tmp, outfile);
    }
    return outfile;
  })();
  return bundled;
}

export interface HarnessMessage {
  type: string;
  id?: string;
  event?: PoolEvent;
  snapshot?: PoolSnapshot;
  [k: string]: unknown;
}

/** The test side of test/support/agent-harness.ts: one replica process and its JSON-lines channel. */
export class AgentProcess {
  readonly events: PoolEvent[] = [];
  readonly messages: HarnessMessage[] = [];
  private readonly waiters = new Map<string, Array<(m: HarnessMessage) => void>>();
  private readonly listeners = new Set<(m: HarnessMessage) => void>();
  readonly exited: Promise<number | null>;
  stderr = "";

  private constructor(
    readonly agentId: string,
    readonly child: ChildProcess,
  ) {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (line) => {
      let m: HarnessMessage;
      try {
        m = JSON.parse(line) as HarnessMessage;
      } catch {
        return;
      }
      if (m.type === "event" && m.event) this.events.push(m.event);
      else this.messages.push(m);
      for (const l of this.listeners) l(m);
      const key = m.id ? `${m.type}:${m.id}` : m.type;
      const ws = this.waiters.get(key);
      if (ws) {
        this.waiters.delete(key);
        for (const w of ws) w(m);
      }
    });
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  static async start(
    agentId: string,
    env: Record<string, string>,
    readyTimeoutMs = 20_000,
  ): Promise<AgentProcess> {
    const entry = await harnessEntry();
    const child = spawn(process.execPath, [entry], {
      env: { ...process.env, ...env, AGENT_ID: agentId },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const p = new AgentProcess(agentId, child);
    const ready = p.next("ready", readyTimeoutMs);
    const fatal = p.next("fatal", readyTimeoutMs + 1000).then((m) => {
      throw new Error(`agent ${agentId} failed: ${String(m.message)}`);
    });
    await Promise.race([
      ready,
      fatal,
      p.exited.then((c) => Promise.reject(new Error(`agent ${agentId} exited ${c}: ${p.stderr}`))),
    ]);
    return p;
  }

  send(cmd: Record<string, unknown>): void {
    this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }

  /** The next message of `type` (and `id`), or reject after the timeout. */
  next(type: string, timeoutMs: number, id?: string): Promise<HarnessMessage> {
    const key = id ? `${type}:${id}` : type;
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${this.agentId}: no ${key} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const list = this.waiters.get(key) ?? [];
      list.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
      this.waiters.set(key, list);
    });
  }

  onMessage(l: (m: HarnessMessage) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  request(
    cmd: Record<string, unknown> & { id: string },
    replyType: string,
    timeoutMs: number,
  ): Promise<HarnessMessage> {
    const p = this.next(replyType, timeoutMs, cmd.id);
    this.send(cmd);
    return p;
  }

  async snapshot(timeoutMs = 5_000): Promise<HarnessMessage> {
    const id = `snap-${Math.random().toString(36).slice(2)}`;
    return await this.request({ cmd: "snapshot", id }, "snapshot", timeoutMs);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }

  /** Graceful stop (releases what it holds, gives up leadership), SIGKILL after the timeout. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send({ cmd: "exit" });
    const t = setTimeout(() => this.kill(), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}
