import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_ADMIN_SUBJECT } from "../../devstack/issuer.ts";
import {
  type ChatStreamEvent,
  type ExecEvent,
  type SandboxApiError,
  SandboxClient,
} from "../../sdk/typescript/src/index.ts";
import { SCOPES } from "../../shared/api.ts";
import { apiError, buildTsClient, SDK_QUOTA_BURST, type SdkStack, startSdkStack } from "./sdk-stack.ts";
import { tempDir, waitFor } from "./stack-helpers.ts";

// The TypeScript client against the running local stack: the edge in workerd, a real agent process,
// devcluster pods, the scripted OpenAI-compatible server behind chat. Nothing of the project is mocked.

const MiB = 1024 * 1024;
const sdk: SdkStack = await startSdkStack("sdk-ts-");
const { stack } = sdk;
let client: SandboxClient;

beforeAll(() => {
  client = new SandboxClient({ baseUrl: stack.edgeUrl, token: stack.tokens.tenantA });
});
afterAll(() => sdk.close());

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of it) out.push(e);
  return out;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("exec", () => {
  it("runs a command in a pod and returns the result; a failing command is a result, not an error", async () => {
    const r = await client.exec("echo out; echo err >&2; pwd; exit 3", { timeoutSeconds: 10 });
    expect(r).toMatchObject({ exitCode: 3, stdout: "out\n/workspace\n", stderr: "err\n", timedOut: false });
    expect(r.pod).toMatch(/^sandbox-/);
    expect(r.requestId).toMatch(/^[0-9a-f-]{36}$/);

    const env = await client.exec("echo $GREETING; cat", { env: { GREETING: "hi" }, stdin: "from stdin" });
    expect(env.stdout).toBe("hi\nfrom stdin");
  });

  it("a command past its own timeout comes back timedOut, killed", async () => {
    const r = await client.exec("sleep 30", { timeoutSeconds: 1 });
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBeNull();
  });

  it("streams typed events: acquired, output in order, then the result", async () => {
    const events = await collect(
      client.execStream("for i in 1 2 3; do echo line$i; sleep 0.2; done; echo oops >&2"),
    );
    // `queued` comes first only when every pod is busy.
    const types = events.map((e) => e.type).filter((t) => t !== "queued");
    expect(types[0]).toBe("acquired");
    expect(types.at(-1)).toBe("result");
    const stdout = events.flatMap((e) => (e.type === "stdout" ? [e.data] : [])).join("");
    const stderr = events.flatMap((e) => (e.type === "stderr" ? [e.data] : [])).join("");
    expect(stdout).toBe("line1\nline2\nline3\n");
    expect(stderr).toBe("oops\n");
    // The lines arrived as the command printed them, not all at the end.
    expect(events.filter((e) => e.type === "stdout").length).toBeGreaterThanOrEqual(2);
    const last = events.at(-1) as Extract<ExecEvent, { type: "result" }>;
    expect(last.result).toMatchObject({ exitCode: 0, stdout: "line1\nline2\nline3\n" });
  });

  it("leaving a stream early cancels the command and frees its pod", async () => {
    let pod = "";
    for await (const e of client.execStream("echo started; sleep 60", { timeoutSeconds: 120 })) {
      if (e.type === "acquired") pod = e.pod;
      if (e.type === "stdout") break;
    }
    expect(pod).toMatch(/^sandbox-/);
    await waitFor(
      "the pod to be released",
      async () => {
        const [snap] = await stack.pools();
        return (
          snap?.pods.find((p) => p.name === pod)?.holder === null || !snap?.pods.some((p) => p.name === pod)
        );
      },
      15_000,
      100,
    );
  });
});

describe("chat", () => {
  it("returns the reply with the real command output and its tool calls", async () => {
    const r = await client.chat("list it: `echo chat-marker-$((6*7)) && pwd`");
    expect(r.reply).toContain("chat-marker-42");
    expect(r.reply).toContain("/workspace");
    expect(r.toolCalls).toHaveLength(1);
    expect(r.toolCalls[0]).toMatchObject({ command: "echo chat-marker-$((6*7)) && pwd", exitCode: 0 });
    // The session continues.
    const again = await client.chat("again: `true`", { sessionId: r.sessionId });
    expect(again.sessionId).toBe(r.sessionId);
  });

  it("streams the tool call, its result and the reply, ending in done", async () => {
    const events: ChatStreamEvent[] = await collect(
      client.chat("run `echo streamed-chat`", { stream: true }),
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
    const deltas = events.flatMap((e) => (e.type === "assistant.delta" ? [e.text] : [])).join("");
    const done = events.at(-1) as Extract<ChatStreamEvent, { type: "done" }>;
    expect(deltas).toBe(done.response.reply);
    expect(done.response.reply).toContain("streamed-chat");
  });

  it("a model failure inside the stream is thrown as the API error", async () => {
    sdk.model.push({ type: "error", status: 400, message: "scripted refusal" });
    const e = await apiError(collect(client.chat("this fails", { stream: true })));
    expect(e.code).toBe("model_unavailable");
    expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("pool", () => {
  it("an admin token sees every region's pool; a tenant token is refused with 403", async () => {
    const admin = new SandboxClient({ baseUrl: stack.edgeUrl, token: stack.tokens.admin });
    // The pool of 3 may be replacing a pod this moment (a released pod is deleted and replaced):
    // wait until the snapshot shows it whole.
    const overview = await waitFor(
      "the admin's pool view shows the 3 pods",
      async () => {
        const o = await admin.pool();
        return (o.regions[0]?.pool?.pods.length ?? 0) >= 3 ? o : undefined;
      },
      60_000,
      250,
    );
    expect(overview.regions.map((r) => r.region)).toEqual(["local"]);
    expect((await admin.pool({ region: "local" })).regions).toHaveLength(1);
    const e = await apiError(client.pool());
    expect(e).toMatchObject({ code: "insufficient_scope", status: 403 });
  });
});

describe("errors: one class, a stable code per failure", () => {
  it("invalid input → 400 invalid_request with details; an oversized body → 413", async () => {
    const bad = await apiError(client.exec("true", { timeoutSeconds: 0 }));
    expect(bad).toMatchObject({ code: "invalid_request", status: 400 });
    expect(bad.details?.some((d) => d.path === "timeoutSeconds")).toBe(true);
    expect(bad.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const big = await apiError(client.exec("true", { stdin: "x".repeat(3 * MiB) }));
    expect(big).toMatchObject({ code: "payload_too_large", status: 413 });
  });

  it("a bad token → 401 invalid_token; an expired one → token_expired", async () => {
    const forged = new SandboxClient({
      baseUrl: stack.edgeUrl,
      token: `${stack.tokens.tenantA.slice(0, -4)}AAAA`,
    });
    expect(await apiError(forged.exec("true"))).toMatchObject({ code: "invalid_token", status: 401 });
    const old = await stack.issuer.mint({
      tenant: "t-old",
      subject: "o",
      scopes: [SCOPES.exec],
      ttlSeconds: -120,
    });
    const expired = new SandboxClient({ baseUrl: stack.edgeUrl, token: old });
    expect(await apiError(expired.exec("true"))).toMatchObject({ code: "token_expired", status: 401 });
  });

  it("client-side failures: nothing listening, a timeout, an abort — an aborted stream frees its pod", async () => {
    const nowhere = new SandboxClient({ baseUrl: "http://127.0.0.1:9", token: "t", retries: 0 });
    expect(await apiError(nowhere.exec("true"))).toMatchObject({ code: "network_error", status: 0 });

    expect(await apiError(client.exec("sleep 3", { timeoutSeconds: 10, timeoutMs: 500 }))).toMatchObject({
      code: "client_timeout",
      status: 0,
    });

    const ac = new AbortController();
    let pod = "";
    const reading = collect(
      (async function* () {
        for await (const e of client.execStream("sleep 60", { timeoutSeconds: 120, signal: ac.signal })) {
          if (e.type === "acquired") {
            pod = e.pod;
            ac.abort();
          }
          yield e;
        }
      })(),
    );
    expect(await apiError(reading)).toMatchObject({ code: "request_cancelled" });
    expect(pod).toMatch(/^sandbox-/);
    await waitFor(
      "the aborted command's pod released",
      async () => {
        const [snap] = await stack.pools();
        const p = snap?.pods.find((x) => x.name === pod);
        return snap !== undefined && (p === undefined || p.holder === null);
      },
      15_000,
      100,
    );
  });

  it("an aborted non-streamed exec is cancelled at the edge by its request id: its pod is freed at once", async () => {
    const holders = async () => {
      const [snap] = await stack.pools();
      return new Set((snap?.pods ?? []).flatMap((p) => (p.holder ? [p.holder.requestId] : [])));
    };
    const before = await holders();
    const ac = new AbortController();
    const call = apiError(client.exec("sleep 60", { timeoutSeconds: 120, signal: ac.signal }));
    const held = await waitFor(
      "the command's lease",
      async () => [...(await holders())].find((id) => !before.has(id)),
      15_000,
      50,
    );
    ac.abort();
    expect(await call).toMatchObject({ code: "request_cancelled" });
    // Without the cancel call the pod stays held for the whole `sleep 60`.
    await waitFor(
      "the aborted command's lease released",
      async () => !(await holders()).has(held),
      10_000,
      50,
    );
  });

  it("429: retries honour Retry-After by default, and retries: 0 hands the error over", async () => {
    const token = await stack.issuer.mint({
      tenant: "tenant-sdk-quota",
      // The pool (cheapest admin route) needs an admin: the devstack edge's ADMIN_SUBJECTS.
      subject: DEV_ADMIN_SUBJECT,
      scopes: [SCOPES.admin],
    });
    const noRetry = new SandboxClient({ baseUrl: stack.edgeUrl, token, retries: 0 });
    // Drain the bucket: rounds of concurrent calls until one is refused. How many rounds that takes
    // depends on how fast this machine answers against the refill rate, so it is a loop, not a count.
    const limited: SandboxApiError[] = [];
    for (let sent = 0; limited.length === 0; sent += SDK_QUOTA_BURST + 10) {
      expect(sent, "the bucket never ran dry").toBeLessThan(20 * SDK_QUOTA_BURST);
      const drained = await Promise.allSettled(
        Array.from({ length: SDK_QUOTA_BURST + 10 }, () => noRetry.pool()),
      );
      limited.push(...drained.flatMap((r) => (r.status === "rejected" ? [r.reason as SandboxApiError] : [])));
    }
    expect(limited[0]).toMatchObject({ code: "rate_limited", status: 429 });
    expect(limited[0]!.retryAfterSeconds).toBeGreaterThanOrEqual(1);

    // A flood keeps the bucket empty until the retrying client has been refused once; then it stops,
    // so the retry after Retry-After finds tokens. Refills can still let a first attempt through
    // (more often on a slow machine): then the round is run again (at most 10 rounds).
    let attempts: Array<{ at: number; status: number; retryAfter: string | null }> = [];
    for (let round = 0; round < 10 && attempts[0]?.status !== 429; round++) {
      attempts = [];
      let flooding = true;
      const flood = Promise.all(
        Array.from({ length: 16 }, async () => {
          while (flooding) await noRetry.pool().catch(() => {});
        }),
      );
      // A pass-through fetch that records each real attempt.
      const recording: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        attempts.push({ at: Date.now(), status: res.status, retryAfter: res.headers.get("retry-after") });
        if (res.status === 429) flooding = false;
        return res;
      };
      await new Promise((r) => setTimeout(r, 200));
      const retrying = new SandboxClient({ baseUrl: stack.edgeUrl, token, fetch: recording });
      const overview = await retrying.pool().finally(() => {
        flooding = false;
      });
      await flood;
      expect(overview.regions).toHaveLength(1);
    }
    expect(attempts[0]!.status).toBe(429);
    expect(attempts.at(-1)!.status).toBe(200);
    expect(attempts.length).toBeLessThanOrEqual(3); // 1 + the default 2 retries
    for (let i = 1; i < attempts.length; i++) {
      const waitS = Number(attempts[i - 1]!.retryAfter);
      expect(waitS).toBeGreaterThanOrEqual(1);
      expect(attempts[i]!.at - attempts[i - 1]!.at).toBeGreaterThanOrEqual(waitS * 1000 - 50);
    }
  });
});

describe("sandboxes", () => {
  it("create, exec across calls, refresh, get, list, get-or-create by name, close", async () => {
    const sb = await client.sandboxes.create({ idleTimeoutSeconds: 120 });
    try {
      expect(sb.id).toBeTruthy();
      expect(sb.info).toMatchObject({ state: "ready", idleTimeoutSeconds: 120 });
      expect((await sb.exec("echo kept > state.txt")).exitCode).toBe(0);
      expect((await sb.exec("cat state.txt")).stdout).toBe("kept\n");
      const streamed = await collect(sb.execStream("cat state.txt"));
      expect(streamed.flatMap((e) => (e.type === "stdout" ? [e.data] : [])).join("")).toBe("kept\n");
      const info = await sb.refresh();
      expect(info.id).toBe(sb.id);
      expect((await client.sandboxes.get(sb.id)).info.pod).toBe(sb.info.pod);
      expect((await client.sandboxes.list()).map((s) => s.id)).toContain(sb.id);
    } finally {
      await sb.close();
    }
    expect(await apiError(client.sandboxes.get(sb.id))).toMatchObject({
      code: "sandbox_not_found",
      status: 404,
    });

    const name = `sdk-named-${Date.now() % 100000}`;
    const a = await client.sandboxes.create({ name });
    try {
      const b = await client.sandboxes.create({ name });
      expect(b.id).toBe(a.id);
      expect((await client.sandboxes.list({ name })).map((s) => s.id)).toEqual([a.id]);
    } finally {
      await a.close();
    }
  });

  it("files: a 5 MiB random binary round trip byte-exact, streams in and out, text, list, remove", async () => {
    await using sb = await client.sandboxes.create();
    const data = new Uint8Array(randomBytes(5 * MiB));
    expect(await sb.files.write("bin/data.bin", data)).toMatchObject({ size: 5 * MiB });
    const back = await sb.files.read("bin/data.bin");
    expect(back.byteLength).toBe(5 * MiB);
    expect(sha256(back)).toBe(sha256(data));
    // The pod sees the same bytes.
    expect((await sb.exec("sha256sum /workspace/bin/data.bin")).stdout.split(" ")[0]).toBe(sha256(data));

    // A ReadableStream in, a stream out.
    const chunks = [new TextEncoder().encode("streamed "), new TextEncoder().encode("in")];
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const ch of chunks) c.enqueue(ch);
        c.close();
      },
    });
    await sb.files.write("/workspace/s.txt", body);
    expect(await sb.files.read("s.txt", { as: "text" })).toBe("streamed in");
    const stream = await sb.files.read("bin/data.bin", { as: "stream" });
    expect(sha256(new Uint8Array(await new Response(stream).arrayBuffer()))).toBe(sha256(data));

    const names = (await sb.files.list()).map((e) => `${e.type}:${e.name}`).sort();
    expect(names).toEqual(["dir:bin", "file:s.txt"]);
    expect((await sb.files.list("bin"))[0]).toMatchObject({ name: "data.bin", type: "file", size: 5 * MiB });
    await sb.files.remove("s.txt");
    expect(await apiError(sb.files.read("s.txt"))).toMatchObject({ code: "file_not_found", status: 404 });
    // The server refuses what resolves outside the workspace; a `..` that climbs above it never
    // leaves the client (fetch would resolve it into another route: `remove("..")` is not a DELETE
    // of the sandbox itself).
    expect(await apiError(sb.files.read("/etc/passwd"))).toMatchObject({ code: "invalid_path", status: 400 });
    expect(await apiError(sb.files.read("../etc/passwd"))).toMatchObject({ code: "invalid_path", status: 0 });
    expect(await apiError(sb.files.remove(".."))).toMatchObject({ code: "invalid_path" });
    expect((await sb.refresh()).id).toBe(sb.id);
    expect(await sb.files.read("bin/../bin/data.bin")).toHaveLength(5 * MiB);
    expect(await apiError(sb.files.read("bin"))).toMatchObject({ code: "is_a_directory" });

    // The server answers a listing a page at a time (10,000 entries at most): list() follows `next`.
    expect((await sb.exec("mkdir many && cd many && seq 1 10050 | xargs touch")).exitCode).toBe(0);
    const many = await sb.files.list("many");
    expect(many).toHaveLength(10_050);
    expect(new Set(many.map((e) => e.name)).size).toBe(10_050);
  });

  it("`await using` deletes the sandbox at scope end; another tenant sees none of it", async () => {
    let id = "";
    {
      await using sb = await client.sandboxes.create();
      id = sb.id;
      await sb.files.write("secret.txt", "tenant A only");
      const other = new SandboxClient({ baseUrl: stack.edgeUrl, token: stack.tokens.tenantB });
      expect(await apiError(other.sandboxes.get(id))).toMatchObject({
        code: "sandbox_not_found",
        status: 404,
      });
      expect((await other.sandboxes.list()).map((s) => s.id)).not.toContain(id);
    }
    expect(await apiError(client.sandboxes.get(id))).toMatchObject({ code: "sandbox_not_found" });
  });
});

// ---- the CLI, as a separate process (its bin, exactly what `npx pi-sandbox` runs) ----

const BIN = fileURLToPath(new URL("../../sdk/typescript/bin/pi-sandbox.mjs", import.meta.url));

// The bin runs the compiled package: build dist/ as `npm run build -w @pi-sandbox/client` does.
beforeAll(buildTsClient, 180_000);

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}, cwd = tmpCwd.dir): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      // Only what the CLI is given: no PI_SANDBOX_* of the developer's shell leaks in.
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const tmpCwd = tempDir("sdk-cli-");
afterAll(() => tmpCwd.remove());
const asTenant = () => ({ PI_SANDBOX_URL: stack.edgeUrl, PI_SANDBOX_TOKEN: stack.tokens.tenantA });

describe("pi-sandbox CLI", () => {
  it("exec streams the output and exits with the command's exit code", async () => {
    const r = await cli(["exec", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7"], asTenant());
    expect(r.code).toBe(7);
    expect(r.stdout).toBe("to-out\n");
    expect(r.stderr).toBe("to-err\n");
    const ok = await cli(["exec", "--", "printf", "%s|", "a b", "c"], asTenant());
    expect(ok).toMatchObject({ code: 0, stdout: "a b|c|" });
  });

  it("exec --json prints the result and still exits with the command's code; a timeout exits 124", async () => {
    const r = await cli(["exec", "--json", "--", "echo json-out; exit 4"], asTenant());
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout)).toMatchObject({ exitCode: 4, stdout: "json-out\n" });
    const slow = await cli(["exec", "--timeout", "1", "--", "sleep 20"], asTenant());
    expect(slow.code).toBe(124);
    expect(slow.stderr).toContain("timed out");
  });

  it("chat streams each tool call and the reply", async () => {
    const r = await cli(["chat", "run `echo from-cli-chat`"], asTenant());
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("$ echo from-cli-chat");
    expect(r.stderr).toMatch(/→ exit 0 in \d+ ms/);
    expect(r.stdout).toContain("from-cli-chat");
  });

  it("pool takes the admin token from the local stack's state file; a tenant token exits 77", async () => {
    const stateDir = tempDir("sdk-cli-state-");
    try {
      mkdirSync(join(stateDir.dir, ".devstack"));
      writeFileSync(
        join(stateDir.dir, ".devstack", "state.json"),
        JSON.stringify({ edgeUrl: stack.edgeUrl, tokens: stack.tokens, kubeconfig: stack.kubeconfig }),
      );
      const nested = join(stateDir.dir, "a", "b");
      mkdirSync(nested, { recursive: true });
      const r = await cli(["pool", "--json"], {}, nested);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).regions[0].region).toBe("local");
      const text = await cli(["pool"], {}, nested);
      expect(text.stdout).toMatch(/^local: \d+ pods \(/);
    } finally {
      stateDir.remove();
    }
    const refused = await cli(["pool"], asTenant());
    expect(refused.code).toBe(77);
    expect(refused.stderr).toContain("insufficient_scope");
  });

  it("clear messages and documented exit codes for its own failures", async () => {
    const none = await cli(["exec", "--", "true"]);
    expect(none.code).toBe(78);
    expect(none.stderr).toContain("PI_SANDBOX_URL");
    const usage = await cli(["exec", "--bogus"], asTenant());
    expect(usage.code).toBe(64);
    const badToken = await cli(["exec", "--", "true"], { ...asTenant(), PI_SANDBOX_TOKEN: "not-a-jwt" });
    expect(badToken.code).toBe(77);
    expect(badToken.stderr).toMatch(/^pi-sandbox: invalid_token: /);
    const invalid = await cli(["exec", "--json", "--timeout", "5000", "--", "true"], asTenant());
    expect(invalid.code).toBe(65);
    expect(JSON.parse(invalid.stdout).error.code).toBe("invalid_request");
    const down = await cli(["exec", "--retries", "0", "--", "true"], {
      ...asTenant(),
      PI_SANDBOX_URL: "http://127.0.0.1:9",
    });
    expect(down.code).toBe(69);
    expect(down.stderr).toContain("network_error");
  });

  it("start, ps, logs, logs -f until the exit (its code), kill --signal, kill; a bad pid exits 66", async () => {
    const sb = await client.sandboxes.create({ idleTimeoutSeconds: 120 });
    try {
      const started = await cli(
        // One word after --: that command line as it is (no sh in front, which SIGTERM would end first).
        ["start", sb.id, "--", "echo one; trap 'echo bye; exit 5' TERM; while :; do sleep 0.1; done"],
        asTenant(),
      );
      expect(started.code, started.stderr).toBe(0);
      const pid = Number(started.stdout.trim());
      expect(pid).toBeGreaterThan(0);
      const handle = await sb.processes.get(pid);
      await waitFor("the first line", async () => (await handle.refresh()).outputBytes >= 4, 30_000);
      const ps = await cli(["ps", sb.id], asTenant());
      expect(ps.stdout).toMatch(new RegExp(`^\\s*${pid}\\s+running\\s+4\\s+echo one;`, "m"));
      const logs = await cli(["logs", sb.id, String(pid)], asTenant());
      expect(logs).toMatchObject({ code: 0, stdout: "one\n" });
      // Following: it ends when the process does, with the process's exit code.
      const following = cli(["logs", "-f", sb.id, String(pid)], asTenant());
      // Attached before or after the exit, it reads every byte and the end: the output stays in the ring.
      const term = await cli(["kill", "--signal", "TERM", sb.id, String(pid)], asTenant());
      expect(term.code, term.stderr).toBe(0);
      // (The shell may report its `sleep` child's SIGTERM on a line between the two.)
      const followed = await following;
      expect(followed.code, followed.stderr).toBe(5);
      expect(followed.stdout).toMatch(/^one\n(.*\n)?bye\n$/);
      const after = await cli(["ps", "--json", sb.id], asTenant());
      expect(JSON.parse(after.stdout).processes).toEqual([
        expect.objectContaining({ pid, running: false, exitCode: 5 }),
      ]);
      const killed = await cli(["kill", sb.id, String(pid)], asTenant());
      expect(killed).toMatchObject({ code: 0, stdout: `${pid}  exited 5\n` });
      expect(JSON.parse((await cli(["ps", "--json", sb.id], asTenant())).stdout).processes).toEqual([]);
      const missing = await cli(["logs", sb.id, "4000000"], asTenant());
      expect(missing.code).toBe(66);
      expect(missing.stderr).toContain("process_not_found");
      const badSignal = await cli(["kill", "--signal", "BOGUS", sb.id, String(pid)], asTenant());
      expect(badSignal.code).toBe(64);
      expect(badSignal.stderr).toContain("--signal takes one of SIGHUP");
      expect((await cli(["kill", sb.id], asTenant())).code).toBe(64);
    } finally {
      await sb.close();
    }
  }, 120_000);

  it("sandbox create|list|rm, cp both ways byte-exact, exec --sandbox", async () => {
    const created = await cli(["sandbox", "create", "--json"], asTenant());
    expect(created.code, created.stderr).toBe(0);
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    try {
      const local = join(tmpCwd.dir, "up.bin");
      const data = randomBytes(MiB + 7);
      writeFileSync(local, data);
      expect((await cli(["cp", local, `${id}:in/up.bin`], asTenant())).code).toBe(0);
      const ran = await cli(["exec", "--sandbox", id, "--", "sha256sum in/up.bin"], asTenant());
      expect(ran.stdout.split(" ")[0]).toBe(sha256(data));
      const down = join(tmpCwd.dir, "down.bin");
      expect((await cli(["cp", `${id}:in/up.bin`, down], asTenant())).code).toBe(0);
      expect(sha256(readFileSync(down))).toBe(sha256(data));
      const listed = await cli(["sandbox", "list"], asTenant());
      expect(listed.stdout).toContain(id);
      const ls = await cli(["ls", `${id}:in`], asTenant());
      expect(ls.stdout).toContain("up.bin");
    } finally {
      expect((await cli(["sandbox", "rm", id], asTenant())).code).toBe(0);
    }
    const gone = await cli(["exec", "--sandbox", id, "--", "true"], asTenant());
    expect(gone.code).toBe(66);
    expect(gone.stderr).toContain("sandbox_not_found");
  });
});
