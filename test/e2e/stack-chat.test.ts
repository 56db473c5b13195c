import { readFileSync } from "node:fs";
import { CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "../../devstack/stack.ts";
import type { ChatEvent, ChatResponse } from "../../shared/api.ts";
import { offeredTools } from "../support/offered-tools.ts";
import {
  lastToolOutput,
  type RecordedRequest,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";
import { bearer, readSse, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 6 across processes: the seed's chat flow through the edge, with real agent processes whose
// real `openai` client talks over HTTP to the scripted OpenAI-compatible server (NOT a model).

/**
 * The scripted "model": runs the commands in backticks of the user's message one per round, in
 * order ("parallel:" in the message asks for all of them in one turn), then replies with every
 * tool output of this turn verbatim.
 */
function responder(req: RecordedRequest): ScriptTurn {
  const messages = req.body?.messages ?? [];
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  const user = String(messages[lastUser]?.content ?? "");
  const commands = [...user.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  const outputs = messages.slice(lastUser + 1).filter((m) => m.role === "tool");
  if (user.startsWith("parallel:") && outputs.length === 0) {
    return { type: "tool_calls", calls: commands.map((command) => ({ arguments: { command } })) };
  }
  if (!user.startsWith("parallel:") && outputs.length < commands.length) {
    return { type: "tool_calls", calls: [{ arguments: { command: commands[outputs.length]! } }] };
  }
  return {
    type: "text",
    text: `scripted reply:\n${outputs.map((m) => m.content ?? "").join("\n---\n") || lastToolOutput(req)}`,
  };
}

const tmp = tempDir("stack-chat-");
let stack: Stack;
let model: ScriptedOpenAI;
let leases: CoordinationV1Api;

beforeAll(async () => {
  model = await startScriptedOpenAI({ respond: responder });
  stack = await startStack({
    dir: tmp.dir,
    agentsPerRegion: 2,
    poolSize: 3,
    persistEdge: true,
    agentEnv: {
      LOG_LEVEL: "info",
      OPENAI_BASE_URL: model.baseURL,
      OPENAI_API_KEY: "not-needed",
      OPENAI_MODEL: model.model,
    },
    edgeVars: { TENANT_QUOTA_BURST: "100", TENANT_QUOTA_PER_MINUTE: "600" },
  });
  const kc = new KubeConfig();
  kc.loadFromFile(stack.kubeconfig);
  leases = kc.makeApiClient(CoordinationV1Api);
}, 90_000);

afterAll(async () => {
  await stack?.close();
  await model?.close();
  tmp.remove();
});

interface ChatStream {
  res: Response;
  events: ChatEvent[];
}

async function chatStream(token: string, body: object, path = "/v1/chat"): Promise<ChatStream> {
  const res = await fetch(`${stack.edgeUrl}${path}`, {
    method: "POST",
    headers: bearer(token, { accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const events: ChatEvent[] = [];
  await readSse(res, (m) => {
    const e = JSON.parse(m.data) as ChatEvent;
    expect(m.event).toBe(e.type);
    events.push(e);
  });
  return { res, events };
}

async function chatJson(token: string, body: object): Promise<{ res: Response; body: ChatResponse }> {
  const res = await fetch(`${stack.edgeUrl}/v1/chat`, {
    method: "POST",
    headers: bearer(token),
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return { res, body: JSON.parse(text) as ChatResponse };
}

async function session(token: string, id: string): Promise<Response> {
  return fetch(`${stack.edgeUrl}/v1/sessions/${id}`, {
    headers: bearer(token),
    signal: AbortSignal.timeout(10_000),
  });
}

type SessionView = { messages: Array<{ role: string; content: string; requestId: string }> };

const done = (events: ChatEvent[]) => {
  const last = events.at(-1);
  if (last?.type !== "done") throw new Error(`the stream did not end with done: ${JSON.stringify(last)}`);
  return last.response;
};

/** Leases held for a request id (holderIdentity `${agentId}/${requestId}`), as the API server has them. */
async function leasesHeldFor(requestId: string): Promise<string[]> {
  const list = await leases.listNamespacedLease({ namespace: stack.namespaceOf("local") });
  return list.items
    .filter((l) => l.spec?.holderIdentity?.endsWith(`/${requestId}`))
    .map((l) => l.metadata?.name ?? "?");
}

describe("chat through the edge", () => {
  it("the seed's flow: POST /chat runs pwd and ls in a pod and the reply carries the real listing", async () => {
    const { res, events } = await chatStream(
      stack.tokens.tenantA,
      { message: "Run pwd and ls in the sandbox: `pwd && ls -la /workspace`" },
      "/chat",
    );
    const types = events.map((e) => e.type).filter((t) => t !== "assistant.delta");
    expect(types).toEqual([
      "sandbox.waiting",
      "sandbox.acquired",
      "tool.call",
      "tool.result",
      "assistant.message",
      "sandbox.released",
      "done",
    ]);
    const acquired = events.find((e) => e.type === "sandbox.acquired");
    const released = events.find((e) => e.type === "sandbox.released");
    expect(acquired && "pod" in acquired && acquired.pod).toMatch(/^sandbox-/);
    expect(released && "pod" in released && released.pod).toBe(acquired && "pod" in acquired && acquired.pod);
    const result = events.find((e) => e.type === "tool.result");
    expect(result).toMatchObject({ exitCode: 0, truncated: false, timedOut: false });
    const response = done(events);
    // The real listing produced in the pod: pwd, then ls -la of an empty emptyDir owned by uid 1000.
    expect(response.reply).toContain("/workspace\n");
    // `total` counts the blocks of . and .. — the parent (the image's root) depends on the runtime.
    expect(response.reply).toMatch(/total \d+\n/);
    expect(response.reply).toMatch(/^d\S+\s+\d+\s+\S+\s+\S+.*\s\.\n/m);
    expect(response.toolCalls).toHaveLength(1);
    expect(response.toolCalls[0]).toMatchObject({ command: "pwd && ls -la /workspace", exitCode: 0 });
    expect(response.requestId).toBe(res.headers.get("x-request-id"));
    expect(response.sessionId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    // The deltas add up to the final message.
    const deltas = events.flatMap((e) => (e.type === "assistant.delta" ? [e.text] : [])).join("");
    const message = events.find((e) => e.type === "assistant.message");
    expect(message && "text" in message && message.text).toBe(response.reply);
    expect(deltas).toBe(response.reply);
    // The model really was called over HTTP with the tools (the agent has sandbox files) and got the real output.
    const last = model.completions().at(-1)!;
    // The stack runs the http exec mode: the process tools too.
    expect(last.body?.tools?.map((t) => t.function.name)).toEqual(
      offeredTools({ files: true, processes: true }),
    );
    expect(lastToolOutput(last)).toContain("/workspace");
  });

  it("creates a file then reads it back within one request, on one pod", async () => {
    const marker = `marker-${Date.now()}`;
    const { body } = await chatJson(stack.tokens.tenantA, {
      message: `Write then read: \`echo ${marker} > note.txt && hostname\` then \`cat note.txt && hostname\``,
    });
    expect(body.toolCalls.map((t) => t.exitCode)).toEqual([0, 0]);
    const [first, second] = body.reply.replace(/^scripted reply:\n/, "").split("\n---\n");
    const host = (s: string | undefined) => /stdout:\n(?:.*\n)*?(sandbox-\S+)/.exec(s ?? "")?.[1];
    expect(second).toContain(marker);
    expect(host(first)).toMatch(/^sandbox-/);
    expect(host(second)).toBe(host(first));
    // And the JSON answer names the session it created.
    expect(body.sessionId).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it("runs parallel tool calls of one turn on the request's pod", async () => {
    const { events } = await chatStream(stack.tokens.tenantB, {
      message: "parallel: `echo one > a` `echo two > b` `cat a b`",
    });
    const calls = events.filter((e) => e.type === "tool.call");
    expect(calls.map((e) => ("command" in e ? e.command : ""))).toEqual([
      "echo one > a",
      "echo two > b",
      "cat a b",
    ]);
    expect(events.filter((e) => e.type === "sandbox.acquired")).toHaveLength(1);
    expect(done(events).reply).toContain("one\ntwo\n");
  });

  it("keeps two tenants chatting at once apart: history, sessions and files", async () => {
    const a = `alpha-${Date.now()}`;
    const b = `bravo-${Date.now()}`;
    const turn = (token: string, mine: string, sessionId?: string) =>
      chatJson(token, {
        message: `Keep ${mine}: \`echo ${mine} > ${mine}.txt; sleep 1; ls /workspace\``,
        ...(sessionId ? { sessionId } : {}),
      });
    const [ra, rb] = await Promise.all([turn(stack.tokens.tenantA, a), turn(stack.tokens.tenantB, b)]);
    // Each sees only its own file: different pods, nothing crosses.
    expect(ra.body.reply).toContain(`${a}.txt`);
    expect(ra.body.reply).not.toContain(b);
    expect(rb.body.reply).toContain(`${b}.txt`);
    expect(rb.body.reply).not.toContain(a);

    // Second turns in the same sessions, at once: each model call carries only its own history.
    const before = model.completions().length;
    const [ra2, rb2] = await Promise.all([
      turn(stack.tokens.tenantA, `${a}-2`, ra.body.sessionId),
      turn(stack.tokens.tenantB, `${b}-2`, rb.body.sessionId),
    ]);
    expect(ra2.body.sessionId).toBe(ra.body.sessionId);
    expect(rb2.body.sessionId).toBe(rb.body.sessionId);
    const sent = model
      .completions()
      .slice(before)
      .map((r) => JSON.stringify(r.body?.messages ?? []));
    const ofA = sent.filter((s) => s.includes(`${a}-2`));
    const ofB = sent.filter((s) => s.includes(`${b}-2`));
    expect(ofA.length).toBeGreaterThan(0);
    expect(ofB.length).toBeGreaterThan(0);
    for (const s of ofA) {
      expect(s).toContain(`Keep ${a}:`); // its own first turn is history
      expect(s).not.toContain(b);
    }
    for (const s of ofB) {
      expect(s).toContain(`Keep ${b}:`);
      expect(s).not.toContain(a);
    }
    // Files of the first turn are gone too (a fresh pod per request).
    expect(ra2.body.reply).not.toContain(`${a}.txt`);

    // Sessions: each tenant reads its own; the other tenant's id is simply not found.
    const own = await session(stack.tokens.tenantA, ra.body.sessionId);
    expect(own.status).toBe(200);
    expect(((await own.json()) as SessionView).messages).toHaveLength(4);
    const foreign = await session(stack.tokens.tenantB, ra.body.sessionId);
    expect(foreign.status).toBe(404);
    const foreignDelete = await fetch(`${stack.edgeUrl}/v1/sessions/${ra.body.sessionId}`, {
      method: "DELETE",
      headers: bearer(stack.tokens.tenantB),
      signal: AbortSignal.timeout(10_000),
    });
    expect(foreignDelete.status).toBe(404);
    expect((await session(stack.tokens.tenantA, ra.body.sessionId)).status).toBe(200);
    // Tenant B continuing "tenant A's" session id gets a session of its own, without A's history.
    const hijack = await chatJson(stack.tokens.tenantB, { message: "`true`", sessionId: ra.body.sessionId });
    const hijackSent = JSON.stringify(model.completions().at(-1)?.body?.messages ?? []);
    expect(hijack.body.sessionId).toBe(ra.body.sessionId);
    expect(hijackSent).not.toContain(a);
    expect(
      ((await (await session(stack.tokens.tenantA, ra.body.sessionId)).json()) as SessionView).messages,
    ).toHaveLength(4);
  });

  it("appends history only when the turn completes", async () => {
    const sessionId = `s-pending-${Date.now()}`;
    const slowTurn = (message: string) =>
      fetch(`${stack.edgeUrl}/v1/chat`, {
        method: "POST",
        headers: bearer(stack.tokens.tenantA, { accept: "text/event-stream" }),
        body: JSON.stringify({ message, sessionId }),
        signal: AbortSignal.timeout(30_000),
      });
    const messagesNow = async () =>
      ((await (await session(stack.tokens.tenantA, sessionId)).json()) as SessionView).messages;

    // While the first turn's command runs, the session does not exist yet.
    const res = await slowTurn("slow: `sleep 2; echo slow-done`");
    expect(res.status).toBe(200);
    const rid = res.headers.get("x-request-id")!;
    const reading = readSse(res);
    await waitFor("the turn's lease", async () => (await leasesHeldFor(rid)).length === 1, 10_000, 50);
    expect((await session(stack.tokens.tenantA, sessionId)).status).toBe(404);
    const events = (await reading).map((m) => JSON.parse(m.data) as ChatEvent);
    expect(done(events).sessionId).toBe(sessionId);
    const after = await waitFor("the first turn in the session", async () => {
      const m = await messagesNow();
      return m.length === 2 ? m : undefined;
    });
    expect(after.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(after[1]!.content).toContain("slow-done");
    expect(after[1]!.requestId).toBe(rid);

    // A second turn: still two messages while it runs, four once it is done.
    const res2 = await slowTurn("slow again: `sleep 2; echo again`");
    const rid2 = res2.headers.get("x-request-id")!;
    const reading2 = readSse(res2);
    await waitFor(
      "the second turn's lease",
      async () => (await leasesHeldFor(rid2)).length === 1,
      10_000,
      50,
    );
    expect(await messagesNow()).toHaveLength(2);
    expect(done((await reading2).map((m) => JSON.parse(m.data) as ChatEvent)).sessionId).toBe(sessionId);
    await waitFor("the second turn in the session", async () => (await messagesNow()).length === 4);

    // A turn that fails (the model refuses with a 400) appends nothing.
    model.push({ type: "error", status: 400, message: "scripted refusal 7Kp2" });
    const failed = await chatStream(stack.tokens.tenantA, { message: "this one fails", sessionId });
    expect(failed.events.at(-1)).toMatchObject({ type: "error", error: { code: "model_unavailable" } });
    // The provider's words stay in the agent's log, under the request id the tenant was given.
    expect(JSON.stringify(failed.events)).not.toContain("7Kp2");
    const failedId = (failed.events.at(-1) as { error: { requestId: string } }).error.requestId;
    // The log line is written before the answer, but reaches the file through a pipe: wait for it.
    await waitFor("the provider's words in the agent log", async () =>
      stack.agents
        .flatMap((a) => readFileSync(a.logFile, "utf8").split("\n"))
        .some((l) => l.includes(failedId) && l.includes("scripted refusal 7Kp2")),
    );
    await new Promise((r) => setTimeout(r, 300)); // the edge appends after the stream ends, if at all
    expect(await messagesNow()).toHaveLength(4);
  });

  it("a client that disconnects mid-chat aborts the loop and frees the lease", async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 30_000);
    const res = await fetch(`${stack.edgeUrl}/v1/chat`, {
      method: "POST",
      headers: bearer(stack.tokens.tenantA, { accept: "text/event-stream" }),
      body: JSON.stringify({ message: "hang: `sleep 60`" }),
      signal: ac.signal,
    });
    const requestId = res.headers.get("x-request-id")!;
    let pod = "";
    await readSse(res, (m) => {
      const e = JSON.parse(m.data) as ChatEvent;
      if (e.type === "sandbox.acquired") pod = e.pod;
      return e.type === "tool.call";
    });
    expect(pod).toMatch(/^sandbox-/);
    // The model asked for the command; after the disconnect it must not be asked anything more.
    const completionsBefore = model.completions().length;
    expect(await leasesHeldFor(requestId)).toEqual([pod]);
    const gone = Date.now();
    ac.abort();
    clearTimeout(timer);
    await waitFor(
      "the lease to be released",
      async () => (await leasesHeldFor(requestId)).length === 0,
      10_000,
      100,
    );
    expect(Date.now() - gone).toBeLessThan(10_000);
    // The loop stopped: no further model call for this request (the killed command's outcome is
    // not sent to the model), and the pool refills.
    await new Promise((r) => setTimeout(r, 500));
    expect(model.completions().length).toBe(completionsBefore);
    await waitFor(
      "the pool back to 3 ready pods",
      async () => {
        const [snap] = await stack.pools();
        return snap && snap.pods.filter((p) => p.state === "ready").length === 3;
      },
      15_000,
      200,
    );
  });

  it("history survives an edge restart; the agents reconnect by themselves", async () => {
    const first = await chatJson(stack.tokens.tenantB, { message: "remember: `echo persisted-turn`" });
    const sessionId = first.body.sessionId;
    await stack.restartEdge();
    await waitFor(
      "agents reconnected to the new edge",
      async () => {
        const snaps = await stack.pools();
        return snaps.length === 1;
      },
      20_000,
      200,
    );
    const view = (await (await session(stack.tokens.tenantB, sessionId)).json()) as SessionView;
    expect(view.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(view.messages[1]!.content).toContain("persisted-turn");
    const before = model.completions().length;
    const second = await chatJson(stack.tokens.tenantB, { message: "again: `echo second`", sessionId });
    expect(second.body.sessionId).toBe(sessionId);
    const sent = JSON.stringify(model.completions()[before]?.body?.messages ?? []);
    expect(sent).toContain("remember: `echo persisted-turn`");
    expect(sent).toContain("persisted-turn");
  });
});
