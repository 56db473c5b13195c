import { createHash, randomBytes } from "node:crypto";
import { OpenAIProvider, Runner, setTracingDisabled } from "@openai/agents";
import {
  dir,
  file,
  gitRepo,
  InMemoryRemoteSnapshotStore,
  Manifest,
  SandboxAgent,
  SandboxArchiveError,
  SandboxConfigurationError,
  SandboxExposedPortUnavailableError,
  SandboxUnsupportedFeatureError,
  shell,
  urlForExposedPort,
} from "@openai/agents/sandbox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PiSandboxAgentsClient, type PiSandboxSession } from "../../sdk/typescript/src/agents.ts";
import { SandboxClient } from "../../sdk/typescript/src/index.ts";
import { linkFetch } from "../support/link-fetch.ts";
import {
  lastToolOutput,
  lastUserMessage,
  type ScriptedOpenAI,
  startScriptedOpenAI,
} from "../support/scripted-openai.ts";
import { apiError, type SdkStack, startSdkStack } from "./sdk-stack.ts";

// The OpenAI Agents SDK sandbox client against the running local stack: the real @openai/agents
// runtime (Runner, SandboxAgent) and the scripted OpenAI-compatible server (NOT a model), whose
// `exec_command` call runs the user message verbatim and whose reply is the command's output.

const sdk: SdkStack = await startSdkStack("sdk-agents-");
const { stack } = sdk;
let client: SandboxClient;
let scripted: ScriptedOpenAI;
let runner: Runner;

beforeAll(async () => {
  client = new SandboxClient({ baseUrl: stack.edgeUrl, token: stack.tokens.tenantA });
  scripted = await startScriptedOpenAI({
    respond: (req) =>
      req.body?.messages.at(-1)?.role === "tool"
        ? { type: "text", text: `agent saw:\n${lastToolOutput(req)}` }
        : { type: "tool_calls", calls: [{ name: "exec_command", arguments: { cmd: lastUserMessage(req) } }] },
  });
  setTracingDisabled(true);
  runner = new Runner({
    modelProvider: new OpenAIProvider({
      baseURL: scripted.baseURL,
      apiKey: "not-needed",
      useResponses: false,
    }),
    model: scripted.model,
  });
});
afterAll(async () => {
  await scripted?.close();
  await sdk.close();
});

const agent = () => new SandboxAgent({ name: "pi", instructions: "Use the shell.", capabilities: [shell()] });
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Every path's kind, mode, link target and content hash: equal listings mean equal workspaces. */
const FINGERPRINT =
  "find . -mindepth 1 ! -name '.pi-sandbox-archive-*' -printf '%y %m %p %l\\n' | sort; find . -type f -exec sha256sum {} + | sort -k2";

describe("OpenAI Agents SDK sandbox client (@openai/agents 0.20.0)", () => {
  it("a Sandbox Agent's exec_command and file reads run in one of our sandboxes, deleted after the run", async () => {
    // A pass-through fetch that records which routes the adapter called.
    const calls: string[] = [];
    const recorded = new SandboxClient({
      baseUrl: stack.edgeUrl,
      token: stack.tokens.tenantA,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        calls.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname} ${res.status}`);
        return res;
      },
    });
    const piClient = new PiSandboxAgentsClient(recorded, { idleTimeoutSeconds: 60 });
    const result = await runner.run(agent(), "echo agents-sdk > note.txt && cat note.txt && pwd", {
      sandbox: { client: piClient },
    });
    expect(String(result.finalOutput)).toContain("agents-sdk\n/workspace");
    const last = scripted.completions().at(-1);
    expect(last?.body?.tools?.map((t) => t.function.name)).toContain("exec_command");
    const created = calls.find((c) => c.startsWith("POST /v1/sandboxes "));
    expect(created, calls.join("\n")).toMatch(/ 201$/);
    const id = /^POST \/v1\/sandboxes\/([^/]+)\/exec 200$/m.exec(calls.join("\n"))?.[1];
    expect(id, calls.join("\n")).toBeTruthy();
    // The run owned the session, so the Agents SDK shut it down: our sandbox is gone.
    expect(calls).toContain(`DELETE /v1/sandboxes/${id} 204`);
    expect(await apiError(client.sandboxes.get(decodeURIComponent(id!)))).toMatchObject({
      code: "sandbox_not_found",
    });
  });

  it("persistWorkspace → hydrateWorkspace moves the workspace byte-exact into another sandbox, replacing what was there", async () => {
    const piClient = new PiSandboxAgentsClient(client);
    const binary = new Uint8Array(randomBytes(300 * 1024));
    const all = new Uint8Array(256).map((_, i) => i);
    // The manifest's file and dir entries are materialized at create (applyManifest).
    const manifest = new Manifest({
      entries: {
        "seed.txt": file({ content: "seeded by the manifest\n" }),
        data: dir({ children: { "all.bin": file({ content: all }) } }),
      },
    });
    const source = (await piClient.create({ manifest })) as PiSandboxSession;
    const target = (await piClient.create({})) as PiSandboxSession;
    try {
      const src = await client.sandboxes.get(source.state.sandboxId);
      expect(await src.files.read("seed.txt", { as: "text" })).toBe("seeded by the manifest\n");
      expect(sha256(await src.files.read("data/all.bin"))).toBe(sha256(all));
      await src.files.write("deep/a/b/random.bin", binary);
      const setup = await src.exec(
        "mkdir empty-dir && printf '#!/bin/sh\\necho run\\n' > run.sh && chmod 755 run.sh && ln -s data/all.bin link && printf 'x' > 'name with spaces'",
      );
      expect(setup.exitCode, setup.stderr).toBe(0);
      const before = await src.exec(FINGERPRINT);

      const archive = await source.persistWorkspace();
      expect(archive.length).toBeGreaterThan(binary.length);
      const dst = await client.sandboxes.get(target.state.sandboxId);
      await dst.files.write("stale.txt", "from before the hydrate");
      await target.hydrateWorkspace(archive);

      const after = await dst.exec(FINGERPRINT);
      expect(after.stdout).toBe(before.stdout);
      expect(after.stdout).toContain(`${sha256(binary)}  ./deep/a/b/random.bin`);
      expect(after.stdout).toContain("l 777 ./link data/all.bin");
      expect(after.stdout).toContain("f 755 ./run.sh");
      expect(after.stdout).not.toContain("stale.txt");
      // No archive is left behind in either workspace.
      for (const sb of [src, dst]) {
        expect((await sb.files.list()).map((e) => e.name).filter((n) => n.startsWith(".pi-sandbox"))).toEqual(
          [],
        );
      }
    } finally {
      await source.shutdown();
      await target.shutdown();
    }
  }, 120_000);

  it("archive limits and bad archives are refused before anything is extracted; other entry kinds are refused by name", async () => {
    const piClient = new PiSandboxAgentsClient(client);
    const session = (await piClient.create({})) as PiSandboxSession;
    try {
      const sb = await client.sandboxes.get(session.state.sandboxId);
      await sb.files.write("keep.txt", "still here");
      await sb.files.write("more/one.txt", "1");
      const archive = await session.persistWorkspace();

      await expect(session.hydrateWorkspace(archive, { archiveLimits: { maxMembers: 2 } })).rejects.toThrow(
        /archive members, above the limit of 2/,
      );
      await expect(
        session.hydrateWorkspace(archive, { archiveLimits: { maxInputBytes: 1024 } }),
      ).rejects.toBeInstanceOf(SandboxArchiveError);
      await expect(session.hydrateWorkspace(new TextEncoder().encode("not a tar"))).rejects.toThrow(
        /not a tar archive/,
      );
      session.setArchiveLimits({ maxInputBytes: 512 });
      await expect(session.persistWorkspace()).rejects.toThrow(/above the limit of 512/);
      session.setArchiveLimits(null);
      // Nothing was extracted or left: the workspace is as it was.
      expect(await sb.files.read("keep.txt", { as: "text" })).toBe("still here");
      expect((await sb.files.list()).map((e) => e.name).sort()).toEqual(["keep.txt", "more"]);

      await expect(
        session.materializeEntry({ path: "repo", entry: gitRepo({ repo: "openai/openai-agents-js" }) }),
      ).rejects.toBeInstanceOf(SandboxUnsupportedFeatureError);
      await session.materializeEntry({ path: "added/later.txt", entry: file({ content: "later" }) });
      expect(await sb.files.read("added/later.txt", { as: "text" })).toBe("later");
      expect(Object.keys(session.state.manifest.entries)).toContain("added/later.txt");
    } finally {
      await session.shutdown();
    }
  }, 120_000);

  it("persistWorkspace leaves the manifest's ephemeral entries out of the archive", async () => {
    const piClient = new PiSandboxAgentsClient(client);
    const manifest = new Manifest({
      entries: {
        "kept.txt": file({ content: "kept" }),
        "scratch.txt": file({ content: "not persisted", ephemeral: true }),
      },
    });
    const session = (await piClient.create({ manifest })) as PiSandboxSession;
    try {
      const sb = await client.sandboxes.get(session.state.sandboxId);
      expect(await sb.files.read("scratch.txt", { as: "text" })).toBe("not persisted");
      await session.hydrateWorkspace(await session.persistWorkspace());
      expect((await sb.files.list()).map((e) => e.name)).toEqual(["kept.txt"]);
    } finally {
      await session.shutdown();
    }
  }, 120_000);

  it("the Runner with a remote snapshot: the workspace is saved when the run ends, its sandbox deleted, and the next run's new sandbox is hydrated from it", async () => {
    const store = new InMemoryRemoteSnapshotStore();
    const snapshot = { type: "remote" as const, id: "pi-workspace-1", store };
    const ids: string[] = [];
    const recorded = new SandboxClient({
      baseUrl: stack.edgeUrl,
      token: stack.tokens.tenantA,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        const m = /^\/v1\/sandboxes\/([^/]+)\/exec$/.exec(new URL(String(input)).pathname);
        if (m && !ids.includes(m[1]!)) ids.push(m[1]!);
        return res;
      },
    });
    const piClient = new PiSandboxAgentsClient(recorded);

    const first = await runner.run(
      agent(),
      "mkdir -p notes && echo kept > notes/kept.txt && head -c 100000 /dev/urandom > state.bin && sha256sum state.bin",
      { sandbox: { client: piClient, snapshot } },
    );
    const hash = /([0-9a-f]{64}) {2}state\.bin/.exec(String(first.finalOutput))?.[1];
    expect(hash, String(first.finalOutput)).toBeTruthy();
    expect(await store.exists({ id: "pi-workspace-1" })).toBe(true);
    expect(ids).toHaveLength(1);
    expect(await apiError(client.sandboxes.get(decodeURIComponent(ids[0]!)))).toMatchObject({
      code: "sandbox_not_found",
    });

    const second = await runner.run(agent(), "sha256sum state.bin && cat notes/kept.txt", {
      sandbox: { client: piClient, snapshot },
    });
    expect(ids).toHaveLength(2);
    expect(ids[1]).not.toBe(ids[0]);
    expect(String(second.finalOutput)).toContain(`${hash}  state.bin\nkept`);
  }, 180_000);

  it("supportsPty: exec_command with tty starts sh as a sandbox process, write_stdin types into it and reads what followed", async () => {
    // One tool call per round: start sh on a terminal, type a command, type `exit 3`, poll a session
    // that does not exist; then reply with every tool answer.
    const plan = (answers: string[]): Record<string, unknown> | undefined => {
      const session = Number(/Process running with session ID (\d+)/.exec(answers[0] ?? "")?.[1]);
      return [
        { name: "exec_command", arguments: { cmd: "sh", tty: true, yield_time_ms: 1000 } },
        {
          name: "write_stdin",
          arguments: { session_id: session, chars: "echo $((6*7))\n", yield_time_ms: 5000 },
        },
        { name: "write_stdin", arguments: { session_id: session, chars: "exit 3\n", yield_time_ms: 10_000 } },
        { name: "write_stdin", arguments: { session_id: 9_999_999, chars: "" } },
      ][answers.length];
    };
    const pty = await startScriptedOpenAI({
      respond: (req) => {
        const messages = req.body?.messages ?? [];
        const lastUser = messages.map((m) => m.role).lastIndexOf("user");
        const answers = messages
          .slice(lastUser + 1)
          .filter((m) => m.role === "tool")
          .map((m) => String(m.content ?? ""));
        const next = plan(answers);
        return next
          ? { type: "tool_calls", calls: [next as { name: string; arguments: Record<string, unknown> }] }
          : { type: "text", text: answers.join("\n---\n") };
      },
    });
    try {
      const ptyRunner = new Runner({
        modelProvider: new OpenAIProvider({
          baseURL: pty.baseURL,
          apiKey: "not-needed",
          useResponses: false,
        }),
        model: pty.model,
      });
      const ids: string[] = [];
      // The SDK answers a failed tool with a generic text: what the API said is kept here.
      const refused: string[] = [];
      const recorded = new SandboxClient({
        baseUrl: stack.edgeUrl,
        token: stack.tokens.tenantA,
        fetch: async (input, init) => {
          const m = /^\/v1\/sandboxes\/([^/]+)\/processes$/.exec(new URL(String(input)).pathname);
          if (m && init?.method === "POST") ids.push(decodeURIComponent(m[1]!));
          const res = await fetch(input, init);
          if (res.status >= 400 && res.status !== 404)
            refused.push(
              `${init?.method ?? "GET"} ${new URL(String(input)).pathname} ${res.status} ${await res.clone().text()}`,
            );
          return res;
        },
      });
      const result = await ptyRunner.run(agent(), "use a shell", {
        sandbox: { client: new PiSandboxAgentsClient(recorded) },
      });
      const parts = String(result.finalOutput).split("\n---\n");
      expect(parts, String(result.finalOutput)).toHaveLength(4);
      expect(parts[0], refused.join("\n")).toMatch(/Process running with session ID \d+/);
      // The terminal echoes the input; the answer is on a line of its own.
      expect(parts[1]).toMatch(/Process running with session ID \d+/);
      expect(parts[1]).toMatch(/\r?\n42\r?\n/);
      expect(parts[2]).toContain("Process exited with code 3");
      expect(parts[3]).toContain("write_stdin failed: session not found: 9999999");
      // write_stdin is offered only because the session supports a PTY.
      expect(
        pty
          .completions()
          .at(-1)
          ?.body?.tools?.map((t) => t.function.name),
      ).toEqual(expect.arrayContaining(["exec_command", "write_stdin"]));
      // The process ran in our sandbox, which the run then shut down.
      expect(ids).toHaveLength(1);
      expect(await apiError(client.sandboxes.get(ids[0]!))).toMatchObject({ code: "sandbox_not_found" });
    } finally {
      await pty.close();
    }
  }, 120_000);

  it("resolveExposedPort: a server started in the sandbox is reached through the endpoint's URL (a port link)", async () => {
    const piClient = new PiSandboxAgentsClient(client, {
      idleTimeoutSeconds: 120,
      exposedPorts: [8000],
      exposedPortTtlSeconds: 300,
    });
    const session = await piClient.create(
      new Manifest({ entries: { "index.html": file({ content: "<p>exposed</p>" }) } }),
    );
    try {
      const sb = await client.sandboxes.get(session.state.sandboxId);
      const server = await sb.processes.start({
        argv: ["python3", "-u", "-m", "http.server", "8000", "--bind", "127.0.0.1"],
        cwd: session.state.manifest.root,
      });
      // Its "Serving HTTP" line: it listens.
      let seen = "";
      for await (const c of server.output()) {
        seen += new TextDecoder().decode(c.bytes);
        if (seen.includes("Serving HTTP")) break;
      }
      const endpoint = await session.resolveExposedPort(8000);
      expect(endpoint).toMatchObject({ tls: false, public: false });
      const ttl = Date.parse(String(endpoint.expiresAt)) - Date.now();
      expect(ttl).toBeGreaterThan(200_000);
      expect(ttl).toBeLessThanOrEqual(300_000);
      const url = urlForExposedPort(endpoint, "http");
      expect(url).toBe(endpoint.url);
      // Private (the default): the URL and the tenant's JWT.
      const page = await linkFetch(url, { headers: { authorization: `Bearer ${stack.tokens.tenantA}` } });
      expect(page.status).toBe(200);
      expect(await page.text()).toBe("<p>exposed</p>");
      const withoutJwt = await linkFetch(url);
      expect(withoutJwt.status).toBe(401);
      // Recorded in the state, and the same link again while it lives.
      expect(session.state.exposedPorts?.["8000"]).toEqual(endpoint);
      expect(await session.resolveExposedPort(8000)).toEqual(endpoint);
      // A port the client was not configured for, and one out of range: refused before any request.
      await expect(session.resolveExposedPort(9000)).rejects.toBeInstanceOf(SandboxConfigurationError);
      await expect(session.resolveExposedPort(0)).rejects.toThrow(/between 1 and 65535/);
      // The sandbox gone: the link route's error, as the SDK's exposed-port error.
      const open = new PiSandboxAgentsClient(client, { idleTimeoutSeconds: 60 });
      const other = await open.create(new Manifest());
      await client.sandboxes.remove(other.state.sandboxId);
      const gone = await other.resolveExposedPort(8000).catch((e: unknown) => e);
      expect(gone).toBeInstanceOf(SandboxExposedPortUnavailableError);
      expect((gone as SandboxExposedPortUnavailableError).details).toMatchObject({
        code: "sandbox_not_found",
      });
    } finally {
      await session.shutdown();
    }
  }, 90_000);

  it("resume: a run given a session's state works in that same sandbox; the state survives serialization", async () => {
    const piClient = new PiSandboxAgentsClient(client);
    const session = (await piClient.create({})) as PiSandboxSession;
    try {
      const sb = await client.sandboxes.get(session.state.sandboxId);
      await sb.files.write("resume-marker.txt", "resumed\n");
      const provider = await piClient.serializeSessionState(session.state);
      expect(provider).toEqual({ sandboxId: session.state.sandboxId });
      const state = await piClient.deserializeSessionState({ ...provider, manifest: session.state.manifest });
      const result = await runner.run(agent(), "cat resume-marker.txt", {
        sandbox: { client: piClient, sessionState: state },
      });
      expect(String(result.finalOutput)).toContain("resumed");
      await expect(piClient.deserializeSessionState({ manifest: session.state.manifest })).rejects.toThrow(
        /without a sandboxId/,
      );
    } finally {
      await piClient.delete(session.state);
    }
    expect(await apiError(client.sandboxes.get(session.state.sandboxId))).toMatchObject({
      code: "sandbox_not_found",
    });
  }, 120_000);
});
