/**
 * One agent replica as its own OS process, for the multi-replica lease tests: the real lease
 * manager, pool caches and (leader-elected) pool controller against a cluster from KUBECONFIG.
 * Configuration comes from the agent's env vars (cluster-agent/config.ts). Control is JSON lines:
 * commands on stdin, replies and every bus event on stdout. Run: `node --import tsx agent-harness.ts` (the tests bundle it with esbuild first: see agent-process.ts).
 *
 * Commands: {cmd:"acquire", id, tenant, requestId, holdMs?, probe?, hold?} (hold: keep until
 * {cmd:"release", id}); {cmd:"abort", id}; {cmd:"setPoolSize", n}; {cmd:"snapshot", id};
 * {cmd:"exit"}. Replies: {type:"ready"}, {type:"result", id, ...}, {type:"event", event},
 * {type:"snapshot", id, snapshot}, {type:"released", id}.
 */
import { createInterface } from "node:readline";
import { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { loadConfig } from "../../cluster-agent/config.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { HttpScrubber } from "../../cluster-agent/exec/scrubber.ts";
import { loadKubeConfig, makeClients } from "../../cluster-agent/k8s/client.ts";
import type { LeaseHandle } from "../../cluster-agent/leases/types.ts";

type Command =
  | {
      cmd: "acquire";
      id: string;
      tenant: string;
      requestId: string;
      holdMs?: number;
      probe?: boolean;
      hold?: boolean;
    }
  | { cmd: "release"; id: string }
  | { cmd: "abort"; id: string }
  | { cmd: "setPoolSize"; n: number }
  | { cmd: "snapshot"; id: string }
  | { cmd: "exit" };

const send = (msg: unknown) => process.stdout.write(`${JSON.stringify(msg)}\n`);

async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  if (!cfg.ok) {
    send({ type: "fatal", message: cfg.error.message });
    process.exit(2);
  }
  const config = cfg.value;
  const clients = makeClients(loadKubeConfig(config.kubeconfig));
  const poolToken = config.poolToken ?? "";
  const scrubber =
    config.recycle === "scrub" ? new HttpScrubber({ poolToken, timeoutMs: 10_000 }) : undefined;
  const executor = poolToken ? new HttpExecutor({ poolToken }) : undefined;
  const started = await AgentPool.start({
    config,
    clients,
    scrubber,
    runController: process.env.HARNESS_NO_CONTROLLER !== "1",
    orphanGraceMs: 3_000,
  });
  if (!started.ok) {
    send({ type: "fatal", message: started.error.message });
    process.exit(2);
  }
  const pool = started.value;
  pool.bus.on((event) => send({ type: "event", event }));

  const aborts = new Map<string, AbortController>();
  const holds = new Map<string, { handle: LeaseHandle; done: () => void }>();

  /** The independent overlap check: a directory only one holder at a time can create inside the pod. */
  async function probe(
    h: LeaseHandle,
    holdMs: number,
  ): Promise<{ exitCode: number | null; stdout: string; error?: string }> {
    if (!executor) return { exitCode: null, stdout: "", error: "no POOL_TOKEN: no probe" };
    const secs = (holdMs / 1000).toFixed(3);
    const command = `mkdir /workspace/.holder || { echo "busy:$(cat /workspace/.holder-id 2>/dev/null)"; exit 42; }; echo ${h.requestId} > /workspace/.holder-id; sleep ${secs}; id=$(cat /workspace/.holder-id); rm -f /workspace/.holder-id; rmdir /workspace/.holder; echo "held:$id"`;
    const r = await executor.exec(
      { namespace: h.namespace, pod: h.pod, podIP: h.podIP, fence: h.fence },
      { command, timeoutMs: holdMs + 10_000, signal: h.lost },
    );
    if (!r.ok) return { exitCode: null, stdout: "", error: `${r.error.code}: ${r.error.message}` };
    return { exitCode: r.value.exitCode, stdout: r.value.stdout.trim() };
  }

  async function acquire(c: Extract<Command, { cmd: "acquire" }>): Promise<void> {
    const ac = new AbortController();
    aborts.set(c.id, ac);
    const t0 = performance.now();
    const r = await pool.manager.acquire({ tenant: c.tenant, requestId: c.requestId, signal: ac.signal });
    aborts.delete(c.id);
    if (!r.ok) {
      send({
        type: "result",
        id: c.id,
        ok: false,
        code: r.error.code,
        retryAfterSeconds: r.error.retryAfterSeconds,
        ms: performance.now() - t0,
      });
      return;
    }
    const h = r.value;
    const base = {
      type: "result",
      id: c.id,
      ok: true,
      pod: h.pod,
      podIP: h.podIP,
      fence: h.fence,
      queueMs: h.queueMs,
    };
    if (c.hold) {
      let lostAt: number | undefined;
      h.lost.addEventListener("abort", () => {
        lostAt = Date.now();
        send({ type: "lost", id: c.id, pod: h.pod, at: lostAt });
      });
      send({ ...base, held: true });
      await new Promise<void>((resolve) => holds.set(c.id, { handle: h, done: resolve }));
      return;
    }
    const start = Date.now();
    let probeResult: Awaited<ReturnType<typeof probe>> | undefined;
    if (c.probe) probeResult = await probe(h, c.holdMs ?? 0);
    else if (c.holdMs) await new Promise((res) => setTimeout(res, c.holdMs));
    const end = Date.now();
    await h.release();
    send({ ...base, start, end, lost: h.lost.aborted, probe: probeResult, ms: performance.now() - t0 });
  }

  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    let c: Command;
    try {
      c = JSON.parse(line) as Command;
    } catch {
      return;
    }
    switch (c.cmd) {
      case "acquire":
        void acquire(c);
        break;
      case "abort":
        aborts.get(c.id)?.abort();
        break;
      case "release": {
        const h = holds.get(c.id);
        holds.delete(c.id);
        if (h)
          void h.handle.release().then(() => {
            h.done();
            send({ type: "released", id: c.id });
          });
        else send({ type: "released", id: c.id, missing: true });
        break;
      }
      case "setPoolSize":
        pool.controller.setPoolSize(c.n);
        break;
      case "snapshot":
        send({
          type: "snapshot",
          id: c.id,
          snapshot: pool.snapshot(),
          leader: pool.isLeader,
          held: pool.manager.heldPods(),
        });
        break;
      case "exit":
        void pool.close().finally(() => process.exit(0));
        break;
    }
  });
  rl.on("close", () => void pool.close().finally(() => process.exit(0)));
  send({ type: "ready", agentId: config.agentId, leader: pool.isLeader });
}

main().catch((e: unknown) => {
  send({ type: "fatal", message: e instanceof Error ? e.message : String(e) });
  process.exit(2);
});
