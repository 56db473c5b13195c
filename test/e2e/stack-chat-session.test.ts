import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadKubeConfig, makeClients } from "../../cluster-agent/k8s/client.ts";
import { type Stack, startStack } from "../../devstack/stack.ts";
import type { ChatEvent, ChatPortLink, ChatResponse, Sandbox } from "../../shared/api.ts";
import { linkFetch } from "../support/link-fetch.ts";
import { offeredTools } from "../support/offered-tools.ts";
import {
  type RecordedRequest,
  type ScriptedOpenAI,
  type ScriptTurn,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";
import { bearer, readSse, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 14's chat `sandbox: "session"` across processes: the edge in workerd keeps the session's
// sandbox id in its SessionDO, the real `openai` client in the agent talks to the scripted model,
// and the tools run on a /v1/sandboxes sandbox in devcluster that outlives each turn.

const REGION = "eu-1";
const NOTE = "notes/turn1.txt";

/** "write" makes the model write NOTE, "read" makes it read it; then it replies with the tool answer. */
function responder(req: RecordedRequest): ScriptTurn {
  const messages = req.body?.messages ?? [];
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  const asked = String(messages[lastUser]?.content ?? "");
  const answers = messages.slice(lastUser + 1).filter((m) => m.role === "tool");
  // "fail": write a file (so the turn creates its sandbox), then the model server refuses.
  if (asked === "fail" && answers.length > 0) return { type: "error", status: 400, message: "refused" };
  // "link" / "link-private": serve a page from the sandbox and open a link to it, in one round.
  if (asked.startsWith("link") && answers.length === 0) {
    return {
      type: "tool_calls",
      calls: [
        {
          id: "c0",
          name: "write_file",
          arguments: { path: "index.html", content: "<p>from the session</p>" },
        },
        {
          id: "c1",
          name: "start_process",
          arguments: { command: "exec python3 -u -m http.server 8000 --bind 127.0.0.1", yield_time_ms: 0 },
        },
        {
          id: "c2",
          name: "open_port_link",
          arguments: { port: 8000, ttl_seconds: 120, public: asked === "link" },
        },
      ],
    };
  }
  if (asked.startsWith("link")) return { type: "text", text: String(answers.at(-1)?.content ?? "") };
  if (answers.length === 0) {
    const call =
      asked === "write" || asked === "fail"
        ? { name: "write_file", arguments: { path: NOTE, content: "written in turn 1\n" } }
        : asked === "serve"
          ? { name: "start_process", arguments: { command: "sleep 600", yield_time_ms: 0 } }
          : asked === "ps"
            ? { name: "list_processes", arguments: {} }
            : { name: "read_file", arguments: { path: NOTE } };
    return { type: "tool_calls", calls: [{ id: "c0", ...call }] };
  }
  return { type: "text", text: String(answers[0]?.content ?? "") };
}

const tmp = tempDir("stack-chat-session-");
let stack: Stack;
let model: ScriptedOpenAI;

beforeAll(async () => {
  model = await startScriptedOpenAI({ respond: responder });
  stack = await startStack({
    dir: tmp.dir,
    regions: [REGION],
    agentsPerRegion: 1,
    poolSize: 2,
    agentEnv: {
      LOG_LEVEL: "info",
      OPENAI_BASE_URL: model.baseURL,
      OPENAI_API_KEY: "x",
      OPENAI_MODEL: model.model,
    },
    edgeVars: { TENANT_QUOTA_BURST: "100", TENANT_QUOTA_PER_MINUTE: "600" },
  });
}, 90_000);

afterAll(async () => {
  await stack?.close();
  await model?.close();
  tmp.remove();
});

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${stack.edgeUrl}${path}`, {
    ...init,
    headers: { ...bearer(stack.tokens.tenantA), ...(init.headers as Record<string, string> | undefined) },
    signal: AbortSignal.timeout(60_000),
  });

async function chat(body: object): Promise<ChatResponse> {
  const res = await api("/v1/chat", { method: "POST", body: JSON.stringify(body) });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as ChatResponse;
}

async function sandboxOf(id: string): Promise<Sandbox> {
  const res = await api(`/v1/sandboxes/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Sandbox;
}

describe('chat with sandbox: "session" through the edge', () => {
  it("turn 2 reads the file turn 1 wrote, on the same sandbox (sandbox.acquired names it)", async () => {
    const first = await chat({ message: "write", sessionId: "sess-keep", sandbox: "session" });
    expect(first.reply).toBe(`wrote 18 bytes to /workspace/${NOTE}`);
    expect(first.sandboxId).toMatch(/^sb\.eu-1\.default\.[a-z0-9]{20}$/);
    // The sandbox outlives the turn: it is a live /v1/sandboxes sandbox of the tenant.
    const sb = await sandboxOf(first.sandboxId!);
    expect(sb.state).toBe("ready");

    const res = await api("/v1/chat", {
      method: "POST",
      headers: { accept: "text/event-stream" },
      body: JSON.stringify({ message: "read", sessionId: "sess-keep", sandbox: "session" }),
    });
    expect(res.status).toBe(200);
    const events = (await readSse(res)).map((m) => JSON.parse(m.data) as ChatEvent);
    const acquired = events.find((e) => e.type === "sandbox.acquired");
    expect(acquired).toEqual({ type: "sandbox.acquired", pod: sb.pod, sandboxId: first.sandboxId });
    const done = events.at(-1);
    expect(done?.type).toBe("done");
    const second = (done as Extract<ChatEvent, { type: "done" }>).response;
    expect(second.reply).toBe("     1\twritten in turn 1");
    expect(second.sandboxId).toBe(first.sandboxId);
  }, 90_000);

  it("a process started in turn 1 still runs in turn 2 of the session; a request's own pod takes its processes with it", async () => {
    const first = await chat({ message: "serve", sessionId: "sess-proc", sandbox: "session" });
    const pid = Number(/^process (\d+): running/.exec(first.reply)?.[1]);
    expect(pid, first.reply).toBeGreaterThan(0);
    const system = String(model.completions().at(-1)?.body?.messages[0]?.content ?? "");
    expect(system).toContain("Processes keep running between messages");
    const second = await chat({ message: "ps", sessionId: "sess-proc", sandbox: "session" });
    expect(second.sandboxId).toBe(first.sandboxId);
    expect(second.reply).toBe(`process ${pid}: running\t0 bytes of output\tsleep 600`);

    const once = await chat({ message: "serve", sessionId: "sess-proc-request" });
    expect(once.reply).toMatch(/^process \d+: running/);
    expect(String(model.completions().at(-1)?.body?.messages[0]?.content ?? "")).toContain(
      "Processes are killed when this request ends",
    );
    const later = await chat({ message: "ps", sessionId: "sess-proc-request" });
    expect(later.reply).toBe("no processes");
  }, 90_000);

  it("open_port_link: the client gets a URL that fetches the sandbox's page; the model never sees the token", async () => {
    const res = await api("/v1/chat", {
      method: "POST",
      headers: { accept: "text/event-stream" },
      body: JSON.stringify({ message: "link", sessionId: "sess-link", sandbox: "session" }),
    });
    expect(res.status).toBe(200);
    const events = (await readSse(res)).map((m) => JSON.parse(m.data) as ChatEvent);
    const result = events.find((e) => e.type === "tool.result" && e.id === "c2");
    const link = (result as { link?: ChatPortLink } | undefined)?.link;
    expect(link, JSON.stringify(events)).toMatchObject({ port: 8000, public: true });
    expect(link?.url).toMatch(new RegExp(`^http://${link?.linkId}\\.localhost:\\d+/\\?pi_link=`));
    const done = events.at(-1) as Extract<ChatEvent, { type: "done" }>;
    expect(done.type).toBe("done");
    expect(done.response.toolCalls.find((t) => t.id === "c2")?.link).toEqual(link);
    expect(link?.sandboxId).toBe(done.response.sandboxId);
    // The server may still be starting: a port nothing listens on yet answers 502 until it does.
    const page = await waitFor("the page through the link", async () => {
      const r = await linkFetch(link!.url!);
      return r.status === 200 ? r.text() : false;
    });
    expect(page).toBe("<p>from the session</p>");

    // The model's next request (after the tools ran) holds the link's id, never its URL or token.
    const next = model.completions().at(-1)!;
    expect(next.body?.tools?.map((t) => t.function.name)).toEqual(
      offeredTools({ files: true, processes: true, portLink: true }),
    );
    const sent = JSON.stringify(next.body);
    const token = new URL(link!.url!).searchParams.get("pi_link")!;
    expect(sent).not.toContain("pi_link");
    expect(sent).not.toContain(token);
    const answer = next.body?.messages.find((m) => m.role === "tool" && m.tool_call_id === "c2");
    expect(JSON.parse(String(answer?.content))).toEqual({
      link_id: link?.linkId,
      port: 8000,
      public: true,
      expires_at: link?.expiresAt,
      url: null,
      note: "the user receives the URL",
    });
  }, 90_000);

  it("open_port_link in a JSON answer: a private link's URL, signed for the caller, needs the caller's token", async () => {
    const turn = await chat({ message: "link-private", sessionId: "sess-link-json", sandbox: "session" });
    const link = turn.toolCalls.find((t) => t.id === "c2")?.link;
    expect(link).toMatchObject({ port: 8000, public: false, sandboxId: turn.sandboxId });
    expect(turn.reply).not.toContain("pi_link");
    const url = link!.url!;
    const page = await waitFor("the private page through the link", async () => {
      const r = await linkFetch(url, { headers: bearer(stack.tokens.tenantA) });
      return r.status === 200 ? r.text() : false;
    });
    expect(page).toBe("<p>from the session</p>");
    expect((await linkFetch(url)).status).toBe(401);
    // Signed for the caller's tenant: another tenant's token finds no link there.
    expect((await linkFetch(url, { headers: bearer(stack.tokens.tenantB) })).status).toBe(404);
    expect(JSON.stringify(model.completions().at(-1)?.body)).not.toContain("pi_link");
  }, 90_000);

  it('open_port_link is not offered with sandbox: "request" (a request\'s pod has no sandbox id to link)', async () => {
    await chat({ message: "ps", sessionId: "sess-link-request" });
    const last = model.completions().at(-1)!;
    expect(last.body?.tools?.map((t) => t.function.name)).toEqual(
      offeredTools({ files: true, processes: true }),
    );
    expect(String(last.body?.messages[0]?.content)).not.toContain("open_port_link");
  }, 90_000);

  it('with sandbox: "request" (the default) turn 2 cannot see what turn 1 wrote', async () => {
    const first = await chat({ message: "write", sessionId: "sess-request" });
    expect(first.reply).toBe(`wrote 18 bytes to /workspace/${NOTE}`);
    expect(first.sandboxId).toBeUndefined();
    const second = await chat({ message: "read", sessionId: "sess-request", sandbox: "request" });
    expect(second.reply).toMatch(/^error file_not_found: /);
  }, 90_000);

  it("a session whose sandbox is gone gets a fresh one, and the model is told", async () => {
    const first = await chat({ message: "write", sessionId: "sess-gone", sandbox: "session" });
    const del = await api(`/v1/sandboxes/${first.sandboxId}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    const second = await chat({ message: "read", sessionId: "sess-gone", sandbox: "session" });
    expect(second.sandboxId).toMatch(/^sb\.eu-1\.default\./);
    expect(second.sandboxId).not.toBe(first.sandboxId);
    expect(second.reply).toMatch(/^error file_not_found: /);
    const told = model
      .completions()
      .at(-1)
      ?.body?.messages?.filter((m) => m.role === "system")
      .map((m) => String(m.content ?? ""));
    expect(told?.some((t) => t.includes(`sandbox (${first.sandboxId}) expired or was deleted`))).toBe(true);
  }, 90_000);

  it("a turn that fails after creating its sandbox deletes it (it could never be bound)", async () => {
    const ids = async () => {
      const res = await api("/v1/sandboxes");
      return ((await res.json()) as { sandboxes: Sandbox[] }).sandboxes.map((s) => s.id).sort();
    };
    const before = await ids();
    const res = await api("/v1/chat", {
      method: "POST",
      body: JSON.stringify({ message: "fail", sessionId: "sess-fail", sandbox: "session" }),
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await ids()).toEqual(before);
  }, 90_000);

  it("deleting the session deletes its sandbox: pod and Lease are gone", async () => {
    const first = await chat({ message: "write", sessionId: "sess-delete", sandbox: "session" });
    const sb = await sandboxOf(first.sandboxId!);
    const del = await api("/v1/sessions/sess-delete", { method: "DELETE" });
    expect(del.status).toBe(200);
    expect((await api(`/v1/sandboxes/${sb.id}`)).status).toBe(404);
    expect((await api("/v1/sessions/sess-delete")).status).toBe(404);
    const ns = stack.namespaceOf(REGION);
    const { core, coordination } = makeClients(loadKubeConfig(stack.kubeconfig));
    await waitFor("pod and lease gone", async () => {
      const pods = await core.listNamespacedPod({ namespace: ns });
      const leases = await coordination.listNamespacedLease({ namespace: ns });
      return (
        !pods.items.some((p) => p.metadata?.name === sb.pod && !p.metadata?.deletionTimestamp) &&
        !leases.items.some((l) => l.metadata?.name === sb.pod)
      );
    });
  }, 90_000);
});
