import { readFileSync } from "node:fs";
import { createServer, type Server, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CallerOutcome,
  exec,
  type FaultStack,
  heldLease,
  leakCheck,
  outcome,
  recordCase,
  sleep,
  startFaultStack,
  waitFor,
} from "./support.ts";

// Fault 4: the agents' tunnels drop. (a) The connections are cut between agent and edge (a TCP
// relay the agents dial through is told to drop every socket) while the edge stays up;
// (b) the edge itself restarts on the same port.

interface TcpRelay {
  port: number;
  /** Destroy every relayed connection, both halves, as a network failure would. */
  drop(): number;
  close(): Promise<void>;
}

async function startTcpRelay(targetPort: number): Promise<TcpRelay> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    upstream.connect(targetPort, "127.0.0.1", () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    port,
    drop() {
      const n = pairs.size;
      for (const [a, b] of [...pairs]) {
        a.resetAndDestroy();
        b.resetAndDestroy();
      }
      pairs.clear();
      return n;
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const a = s.address();
  const port = typeof a === "object" && a ? a.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let f: FaultStack;
let relay: TcpRelay;

beforeAll(async () => {
  const edgePort = await freePort();
  relay = await startTcpRelay(edgePort);
  f = await startFaultStack({
    poolSize: 3,
    agentsPerRegion: 2,
    leaseTtlSeconds: 5,
    edgePort,
    agentEnv: { EDGE_URL: `http://127.0.0.1:${relay.port}`, LOG_LEVEL: "info" },
  });
}, 90_000);
afterAll(async () => {
  await f?.close();
  await relay?.close();
}, 60_000);

function tunnelLogins(): number {
  let n = 0;
  for (const a of f.stack.agents) {
    n += readFileSync(a.logFile, "utf8")
      .split("\n")
      .filter((l) => l.includes("tunnel: connected")).length;
  }
  return n;
}

/** Execs until one succeeds (bounded); every attempt is kept for the report. */
async function untilServed(since: number): Promise<{ ms: number; attempts: CallerOutcome[] }> {
  const attempts: CallerOutcome[] = [];
  const ms = await waitFor(
    "an exec to succeed again",
    async () => {
      const r = await exec(f, "echo back", 10, 20_000);
      attempts.push(outcome(r));
      return r.status === 200 && r.exitCode === 0 ? Date.now() - since : undefined;
    },
    30_000,
    100,
  );
  return { ms, attempts };
}

describe("fault: the tunnel dropped", () => {
  it("(a) connections cut: in-flight requests fail fast with 502 tunnel_closed, agents reconnect, the next request succeeds", async () => {
    const loginsBefore = tunnelLogins();
    const inflight = exec(f, "sleep 20", 30);
    const held = await heldLease(f);
    const droppedAt = Date.now();
    const dropped = relay.drop();
    const caller = await inflight;
    const callerAfterDropMs = Date.now() - droppedAt;
    const next = await untilServed(droppedAt);
    const reconnected = await waitFor(
      "both agents to log in again",
      async () => (tunnelLogins() >= loginsBefore + 2 ? tunnelLogins() - loginsBefore : undefined),
      20_000,
    );
    const leaks = await leakCheck(f);

    recordCase("4a-tunnel-connections-cut", {
      setup: {
        poolSize: f.poolSize,
        agents: 2,
        how: "TCP relay between agents and edge resets every socket",
      },
      connectionsDropped: dropped,
      heldPod: held.pod,
      callerReceived: outcome(caller),
      callerAfterDropMs,
      requestsUntilServedAgain: next.attempts,
      servedAgainAfterDropMs: next.ms,
      agentReconnects: reconnected,
      leakCheck: leaks,
    });

    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(caller.status).toBe(502);
    expect(caller.code).toBe("tunnel_closed");
    expect(caller.requestId).toBe(held.requestId);
    expect(callerAfterDropMs).toBeLessThan(5_000);
    for (const a of next.attempts.slice(0, -1)) {
      // Before the agents are back: no agent (503) is the documented answer.
      expect([a.status, a.code]).toEqual([503, "no_agent"]);
    }
    expect(reconnected).toBeGreaterThanOrEqual(2);
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 90_000);

  it("(b) the edge restarted: the in-flight caller's connection ends (never hangs), agents reconnect, the next request succeeds", async () => {
    const loginsBefore = tunnelLogins();
    const inflight = exec(f, "sleep 20", 30);
    const held = await heldLease(f);
    const restartAt = Date.now();
    const restarting = f.stack.restartEdge();
    const caller = await inflight;
    const callerAfterRestartMs = Date.now() - restartAt;
    await restarting;
    const edgeBackMs = Date.now() - restartAt;
    // The held lease is released by the agent (the tunnel's close aborts the request).
    const released = await waitFor(
      `the lease on ${held.pod} to be released`,
      async () => {
        const l = await f.coordination
          .readNamespacedLease({ name: held.pod, namespace: f.namespace })
          .catch(() => undefined);
        return !l?.spec?.holderIdentity ? Date.now() - restartAt : undefined;
      },
      15_000,
    );
    await sleep(100);
    const next = await untilServed(restartAt);
    const reconnected = await waitFor(
      "both agents to log in again",
      async () => (tunnelLogins() >= loginsBefore + 2 ? tunnelLogins() - loginsBefore : undefined),
      20_000,
    );
    const leaks = await leakCheck(f);

    recordCase("4b-edge-restarted", {
      setup: {
        poolSize: f.poolSize,
        agents: 2,
        how: "stack.restartEdge(): workerd disposed and started on the same port",
      },
      heldPod: held.pod,
      callerReceived: outcome(caller),
      callerAfterRestartMs,
      edgeBackAfterMs: edgeBackMs,
      heldLeaseReleasedAfterMs: released,
      requestsUntilServedAgain: next.attempts,
      servedAgainAfterRestartMs: next.ms,
      agentReconnects: reconnected,
      leakCheck: leaks,
    });

    // The edge process that held the caller's connection is gone: the caller sees the connection
    // end (or, if the edge failed it first, the 502 envelope) — promptly, never a hang.
    if (caller.status !== null) expect([caller.status, caller.code]).toEqual([502, "tunnel_closed"]);
    else expect(caller.transportError).toBeTruthy();
    expect(callerAfterRestartMs).toBeLessThan(10_000);
    for (const a of next.attempts.slice(0, -1)) {
      if (a.status !== null) expect([a.status, a.code]).toEqual([503, "no_agent"]);
    }
    expect(reconnected).toBeGreaterThanOrEqual(2);
    expect(leaks).toMatchObject({ ok: true, leasesFree: true, readyPods: f.poolSize, leases: f.poolSize });
  }, 90_000);
});
