/**
 * The chat loop on the real stack: scripted OpenAI-compatible server (NOT a language model) over
 * HTTP with the real `openai` client, the real lease manager + pool controller (AgentPool), the real
 * HTTP executor, and devcluster pods running the real sandbox exec server in bubblewrap.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentPool } from "../../cluster-agent/agent-pool.ts";
import { createChatHandler } from "../../cluster-agent/chat/chat-handler.ts";
import { readModelConfig } from "../../cluster-agent/chat/model-config.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import { microNow } from "../../cluster-agent/k8s/microtime.ts";
import type { ChatEvent, PoolEvent, RelayChatRequest } from "../../shared/api.ts";
import {
  type LeaseCluster,
  poolView,
  startLeaseCluster,
  startPool,
  waitFor,
  waitForSettledPool,
} from "../support/lease-cluster.ts";
import {
  demoResponder,
  lastToolOutput,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";

let cluster: LeaseCluster;
let pool: AgentPool;
let executor: HttpExecutor;
const poolEvents: PoolEvent[] = [];
const servers: ScriptedOpenAI[] = [];

beforeAll(async () => {
  cluster = await startLeaseCluster("chat-sandbox");
  const started = await startPool(cluster, {
    AGENT_ID: "chat-agent",
    POOL_SIZE: "2",
    QUEUE_TIMEOUT_SECONDS: "10",
    LEASE_TTL_SECONDS: "15",
  });
  pool = started.pool;
  pool.bus.on((e) => poolEvents.push(e));
  executor = new HttpExecutor({ poolToken: cluster.poolToken });
  await waitForSettledPool(cluster, 2, 40_000);
}, 90_000);

afterAll(async () => {
  for (const s of servers) await s.close();
  await pool?.close();
  await cluster?.close();
});

async function chat(
  script: {
    script?: ScriptTurn[];
    respond?: (r: import("../support/scripted-openai.ts").RecordedRequest) => ScriptTurn;
  },
  message: string,
  opts: { requestId: string; signal?: AbortSignal; onEvent?: (e: ChatEvent) => void },
) {
  const server = await startScriptedOpenAI(script);
  servers.push(server);
  const handler = createChatHandler({
    model: readModelConfig({ OPENAI_BASE_URL: server.baseURL, OPENAI_MODEL: "scripted" }),
    acquire: (req) => pool.manager.acquire(req),
    executor,
    bus: pool.bus,
  });
  const events: ChatEvent[] = [];
  const request: RelayChatRequest = { message, sessionId: "sess", history: [] };
  const result = await handler(request, {
    tenant: "tenant-a",
    requestId: opts.requestId,
    signal: opts.signal ?? new AbortController().signal,
    emit: (e) => {
      events.push(e);
      opts.onEvent?.(e);
    },
  });
  return { result, events, server };
}

const leaseEventsOf = (requestId: string, type: PoolEvent["type"]) =>
  poolEvents.filter((e) => e.requestId === requestId && e.type === type);

describe("chat on the real sandbox stack", () => {
  it("creates a file and reads it back within one request, on one pod", async () => {
    const token = randomBytes(8).toString("hex");
    const requestId = `chat-file-${token}`;
    const { result, events } = await chat(
      {
        script: [
          { type: "tool_calls", calls: [{ arguments: { command: `echo ${token} > /workspace/note.txt` } }] },
          { type: "tool_calls", calls: [{ arguments: { command: "cat /workspace/note.txt && pwd" } }] },
          { type: "text", text: (req) => `The file says:\n${lastToolOutput(req)}` },
        ],
      },
      "write a note and read it back",
      { requestId },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.toolCalls.map((t) => t.exitCode)).toEqual([0, 0]);
    expect(result.value.reply).toContain(token);
    expect(result.value.reply).toContain("/workspace");
    const acquired = events.filter((e) => e.type === "sandbox.acquired");
    expect(acquired).toHaveLength(1);
    const pod = acquired[0]?.type === "sandbox.acquired" ? acquired[0].pod : "";
    expect(events).toContainEqual({ type: "sandbox.released", pod });
    // One lease for the whole request, released at its end; both commands ran on that pod.
    expect(leaseEventsOf(requestId, "lease.acquired").map((e) => e.pod)).toEqual([pod]);
    // Each command of the chat shows on the pool stream like a /v1/exec command (the dashboard timeline, exec metrics).
    const finished = leaseEventsOf(requestId, "exec.finished");
    expect(leaseEventsOf(requestId, "exec.started").map((e) => e.pod)).toEqual([pod, pod]);
    expect(finished.map((e) => (e.type === "exec.finished" ? [e.pod, e.data.exitCode] : null))).toEqual([
      [pod, 0],
      [pod, 0],
    ]);
    await waitFor("lease released", () => leaseEventsOf(requestId, "lease.released").length === 1, 5_000, 50);
    const view = await poolView(cluster);
    expect(view.held.filter((l) => l.spec?.holderIdentity?.endsWith(`/${requestId}`))).toHaveLength(0);
  });

  it("runs the seed flow: the reply carries the real /workspace listing", async () => {
    const requestId = `chat-seed-${randomBytes(4).toString("hex")}`;
    const { result, server } = await chat(
      { respond: demoResponder },
      "Run `pwd && touch /workspace/seed-marker && ls -la /workspace` in the sandbox",
      { requestId },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.reply).toContain("not a language model");
    expect(result.value.reply).toMatch(/stdout:\n\/workspace\n/);
    expect(result.value.reply).toContain("seed-marker");
    expect(server.completions()).toHaveLength(2);
  });

  it("runs parallel tool calls on the one pod, in order", async () => {
    const requestId = `chat-par-${randomBytes(4).toString("hex")}`;
    const { result, server } = await chat(
      {
        script: [
          {
            type: "tool_calls",
            calls: [
              { id: "w", arguments: { command: "echo first > /workspace/a" } },
              { id: "x", arguments: { command: "cat /workspace/a; echo second >> /workspace/a" } },
              { id: "bad", arguments: '{"command": ' },
              { id: "r", arguments: { command: "cat /workspace/a; exit 3" } },
            ],
          },
          { type: "text", text: "done" },
        ],
      },
      "parallel",
      { requestId },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.toolCalls.map((t) => [t.id, t.exitCode])).toEqual([
      ["w", 0],
      ["x", 0],
      ["r", 3],
    ]);
    const tools = (server.completions()[1]?.body?.messages ?? []).filter((m) => m.role === "tool");
    expect(tools.map((m) => m.tool_call_id)).toEqual(["w", "x", "bad", "r"]);
    expect(tools[1]?.content).toContain("stdout:\nfirst\n");
    expect(tools[2]?.content).toContain("not valid JSON");
    expect(tools[3]?.content).toContain("exit_code: 3");
    expect(tools[3]?.content).toContain("stdout:\nfirst\nsecond\n");
    expect(leaseEventsOf(requestId, "lease.acquired")).toHaveLength(1);
  });

  it("aborting mid-command kills the command and releases the lease", async () => {
    const requestId = `chat-abort-${randomBytes(4).toString("hex")}`;
    // A distinctive duration so the process can be found in the host's process table.
    const marker = `${40 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 1000)}`;
    const client = new AbortController();
    let abortedAt = 0;
    const running = chat(
      {
        script: [
          {
            type: "tool_calls",
            calls: [{ arguments: { command: `sleep ${marker}`, timeout_seconds: 120 } }],
          },
          { type: "text", text: "never" },
        ],
      },
      "sleep",
      {
        requestId,
        signal: client.signal,
        onEvent: (e) => {
          if (e.type === "tool.call") {
            void waitFor("sleep running", () => sleepRunning(marker), 5_000, 50).then(() => {
              abortedAt = Date.now();
              client.abort();
            });
          }
        },
      },
    );
    const { result, events } = await running;
    // The sleep would take 40+ s: the request ended because of the abort, not because the command finished.
    expect(Date.now() - abortedAt).toBeLessThan(20_000);
    expect(!result.ok && result.error.code).toBe("request_cancelled");
    expect(events.map((e) => e.type)).toEqual(["sandbox.waiting", "sandbox.acquired", "tool.call"]);
    await waitFor("sleep killed", () => !sleepRunning(marker), 5_000, 50);
    await waitFor("lease released", () => leaseEventsOf(requestId, "lease.released").length === 1, 5_000, 50);
  });

  // Last: the stolen lease stays with the "thief" until it expires and the controller recycles the pod.
  it("a lease lost mid-command stops the command and ends the request with lease_lost", async () => {
    const requestId = `chat-lost-${randomBytes(4).toString("hex")}`;
    const marker = `${100 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 1000)}`;
    let pod = "";
    let stolenAt = 0;
    const { result, events } = await chat(
      {
        script: [
          {
            type: "tool_calls",
            calls: [{ arguments: { command: `sleep ${marker}`, timeout_seconds: 120 } }],
          },
          { type: "text", text: "never" },
        ],
      },
      "sleep",
      {
        requestId,
        onEvent: (e) => {
          if (e.type === "sandbox.acquired") pod = e.pod;
          if (e.type === "tool.call") {
            void waitFor("sleep running", () => sleepRunning(marker), 5_000, 50).then(async () => {
              // Take the Lease over through the API, as another holder would.
              const lease = await cluster.clients.coordination.readNamespacedLease({
                name: pod,
                namespace: cluster.namespace,
              });
              const now = microNow();
              await cluster.clients.coordination.replaceNamespacedLease({
                name: pod,
                namespace: cluster.namespace,
                body: {
                  ...lease,
                  spec: {
                    ...lease.spec,
                    holderIdentity: "thief/x",
                    acquireTime: now,
                    renewTime: now,
                    leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1,
                  },
                },
              });
              stolenAt = Date.now();
            });
          }
        },
      },
    );
    expect(stolenAt).toBeGreaterThan(0);
    // Renewal runs every TTL/3 = 2 s: the loss is noticed and the command stopped long before the sleep (100+ s) ends.
    expect(Date.now() - stolenAt).toBeLessThan(20_000);
    expect(!result.ok && result.error.code).toBe("lease_lost");
    expect(events.map((e) => e.type)).toEqual([
      "sandbox.waiting",
      "sandbox.acquired",
      "tool.call",
      "sandbox.released",
      "error",
    ]);
    expect(events.at(-1)).toMatchObject({ error: { code: "lease_lost", requestId } });
    await waitFor("sleep killed", () => !sleepRunning(marker), 5_000, 50);
  }, 30_000);
});

function sleepRunning(marker: string): boolean {
  const ps = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" });
  return ps.split("\n").some((l) => l.trim() === `sleep ${marker}`);
}
