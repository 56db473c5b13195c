// Per-pod exec tokens, against devcluster with the real pool controller: the pods it creates
// carry only their own derived token (no Secret, no pool token), and a command in one sandbox
// that steals its exec server's token cannot use it on another sandbox — while the agent, which
// derives each pod's token from the pool token, execs in both. In devcluster every pod shares the
// host loopback (127.0.1.x:8080), so the network path between pods exists and the token is the
// only barrier.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import type { ExecCall, ExecTarget } from "../../cluster-agent/exec/executor.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { podExecToken } from "../../cluster-agent/exec/pod-token.ts";
import { PoolController } from "../../cluster-agent/pool/controller.ts";
import { buildSandboxPod, loadPodTemplate } from "../../cluster-agent/pool/pod-template.ts";
import { PoolCaches } from "../../cluster-agent/pool-state/caches.ts";
import { createLogger } from "../../cluster-agent/telemetry/logger.ts";
import {
  type LeaseCluster,
  poolView,
  startLeaseCluster,
  startPool,
  waitFor,
  waitForSettledPool,
} from "../support/lease-cluster.ts";

let cluster: LeaseCluster;
let pool: AgentPool | undefined;

beforeAll(async () => {
  cluster = await startLeaseCluster("pool-pod-token");
}, 60_000);

afterAll(async () => {
  await pool?.close();
  await cluster?.close();
}, 60_000);

const call = (command: string): ExecCall => ({
  command,
  timeoutMs: 15_000,
  signal: new AbortController().signal,
});

/**
 * Run inside a sandbox: read every readable /proc/<pid>/environ (the exec server's among them),
 * take the POOL_TOKEN found there and POST /exec with it to each target IP; print one line per
 * target: `<ip> <status>`, plus `found <n>` for how many distinct tokens it found.
 */
const STEAL_AND_USE = String.raw`
const fs = require("node:fs");
const found = new Set();
for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
  let env = "";
  try { env = fs.readFileSync("/proc/" + pid + "/environ", "latin1"); } catch { continue; }
  for (const kv of env.split("\0")) if (kv.startsWith("POOL_TOKEN=")) found.add(kv.slice(11));
}
console.log("found " + found.size);
for (const token of found) console.log("token " + token);
(async () => {
  for (const ip of process.argv.slice(1)) {
    for (const token of found) {
      const res = await fetch("http://" + ip + ":8080/exec", {
        method: "POST",
        headers: { authorization: "Bearer " + token, "x-fence-token": "1", "content-type": "application/json" },
        body: JSON.stringify({ command: "echo pwned", timeoutMs: 5000 }),
        signal: AbortSignal.timeout(5000),
      }).catch((e) => ({ status: "error:" + e.message, text: async () => "" }));
      // ndjson frames: did the command's stdout come back?
      const pwned = (await res.text()).split("\n").some((l) => {
        try { const f = JSON.parse(l); return f.type === "stdout" && Buffer.from(f.data, "base64").toString().includes("pwned"); }
        catch { return false; }
      });
      console.log(ip + " " + res.status + (pwned ? " pwned" : ""));
    }
  }
})();
`;

describe("per-pod exec tokens", () => {
  it("pods carry only their own token; a token stolen in pod A is refused by pod B; the agent reaches both", async () => {
    const started = await startPool(cluster, { AGENT_ID: "pod-token-agent", POOL_SIZE: "2" });
    pool = started.pool;
    await waitFor("leadership", () => started.pool.isLeader, 5_000, 20);
    const view = await waitForSettledPool(cluster, 2, 30_000);
    const [a, b] = view.live;
    if (!a || !b) throw new Error("expected two pods");

    // (3) What the controller created: no Secret reference, no pool token, the pod's own token.
    for (const p of view.live) {
      const name = p.metadata?.name ?? "";
      expect(name).toMatch(/^sandbox-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
      const json = JSON.stringify(p);
      expect(json).not.toContain("secretKeyRef");
      expect(json).not.toContain(cluster.poolToken);
      const env = p.spec?.containers[0]?.env ?? [];
      expect(env.filter((e) => e.name === "POOL_TOKEN")).toEqual([
        { name: "POOL_TOKEN", value: podExecToken(cluster.poolToken, cluster.namespace, name) },
      ]);
    }
    const secrets = await cluster.clients.core.listNamespacedSecret({ namespace: cluster.namespace });
    expect(secrets.items).toEqual([]);

    const target = (p: typeof a): ExecTarget => ({
      namespace: cluster.namespace,
      pod: p.metadata?.name ?? "",
      podIP: p.status?.podIP ?? "",
      fence: 1,
    });
    const ta = target(a);
    const tb = target(b);
    expect(ta.podIP).not.toBe(tb.podIP);

    // The agent derives each pod's token and execs in both.
    const agent = new HttpExecutor({ poolToken: cluster.poolToken });
    for (const t of [ta, tb]) {
      const r = await agent.exec(t, call("echo hello from $(hostname 2>/dev/null || echo pod)"));
      if (!r.ok) throw r.error;
      expect(r.value.exitCode).toBe(0);
      expect(r.value.stdout).toContain("hello from");
    }

    // (2) In pod A: steal the exec server's token and use it against B (and, as the control
    // that shows the theft and the request work, against A itself).
    const attack = await agent.exec(
      ta,
      call(`node -e '${STEAL_AND_USE.replaceAll("'", `'"'"'`)}' ${tb.podIP} ${ta.podIP}`),
    );
    if (!attack.ok) throw attack.error;
    const out = attack.value.stdout;
    expect(out, attack.value.stderr).toContain("found 1");
    // devcluster pods have their own network namespace: from inside A, B is not even reachable.
    expect(out).toContain(`${tb.podIP} error:`);
    expect(out).not.toContain(`${tb.podIP} 200`);
    expect(out).toContain(`${ta.podIP} 200 pwned`);
    // The stolen token, used where B is reachable (the host, through the kubelet), opens nothing.
    const stolen = /^token (.+)$/m.exec(out)?.[1] ?? "";
    const res = await fetch(`http://${tb.podIP}:8080/exec`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${stolen}`,
        "x-fence-token": "1",
        "content-type": "application/json",
      },
      body: JSON.stringify({ command: "echo pwned", timeoutMs: 5000 }),
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(401);

    // And B still serves the agent afterwards.
    const after = await agent.exec(tb, call("echo still-mine"));
    if (!after.ok) throw after.error;
    expect(after.value.stdout).toBe("still-mine\n");
  }, 90_000);

  it("a name already taken (409 AlreadyExists) makes the controller pick another", async () => {
    // Runs after the test above: its two pods (with Leases) are still there; one more is wanted.
    await pool?.close();
    pool = undefined;
    const existing = (await poolView(cluster)).live.map((p) => p.metadata?.name ?? "");
    expect(existing.length).toBe(2);
    const loaded = loadPodTemplate(undefined);
    if (!loaded.ok) throw loaded.error;
    const template = loaded.value;
    const names = [existing[0] ?? "", "sandbox-fresh"];
    const asked: string[] = [];
    const bus = new EventBus("pod-token-409");
    const caches = new PoolCaches(cluster.clients, cluster.namespace, bus);
    expect(await caches.start()).toBe(true);
    const controller = new PoolController({
      clients: cluster.clients,
      caches,
      bus,
      log: createLogger({ level: "warn" }),
      namespace: cluster.namespace,
      poolSize: 3,
      leaseTtlSeconds: 30,
      podReadyTimeoutSeconds: 30,
      // No periodic resync: the 409 changes nothing a watch would see, so only the retry inside
      // one create can get the third pod made within the wait below.
      resyncMs: 600_000,
      podName: () => {
        const n = names.shift() ?? "sandbox-extra";
        asked.push(n);
        return n;
      },
      podTemplate: (name) =>
        buildSandboxPod(template, {
          namespace: cluster.namespace,
          name,
          execToken: podExecToken(cluster.poolToken, cluster.namespace, name),
          image: template.spec?.containers[0]?.image ?? "",
        }),
    });
    try {
      controller.start();
      const v = await waitForSettledPool(cluster, 3, 20_000);
      expect(asked.slice(0, 2)).toEqual([existing[0], "sandbox-fresh"]);
      expect(v.live.map((p) => p.metadata?.name).sort()).toEqual([...existing, "sandbox-fresh"].sort());
      expect(v.leases.map((l) => l.metadata?.name)).toContain("sandbox-fresh");
      // The taken pod is untouched: still its own token.
      const taken = v.live.find((p) => p.metadata?.name === existing[0]);
      expect(taken?.spec?.containers[0]?.env?.find((e) => e.name === "POOL_TOKEN")?.value).toBe(
        podExecToken(cluster.poolToken, cluster.namespace, existing[0] ?? ""),
      );
    } finally {
      await controller.stop();
      await caches.stop();
    }
  }, 60_000);
});
