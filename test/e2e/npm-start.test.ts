import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { runProcess, tempDir, waitFor } from "./stack-helpers.ts";

// `npm start` as a user (or a script) runs it: through npm, in the background, stopped by a signal
// sent to npm's own pid. npm forwards SIGINT/SIGTERM only to its direct child, so the stack must
// stop from that one signal — every process it started (agents, kubelet, runc, containers, workerd)
// gone, its port closed. With no OPENAI_* set, the first chat works (the scripted stand-in), and
// `npm run demo` against that stack runs the whole flow and exits 0.

const REPO = fileURLToPath(new URL("../../", import.meta.url));

interface Started {
  npm: ChildProcess;
  out: () => string;
  dir: string;
  remove(): void;
}
const started: Started[] = [];

afterEach(() => {
  for (const s of started.splice(0)) {
    // After a failure half-way (npm may have exited and left the stack): the whole process group,
    // so nothing outlives the test. After a pass the group is gone already.
    try {
      process.kill(-s.npm.pid!, "SIGKILL");
    } catch {}
    s.remove();
  }
});

function startNpm(extraEnv: Record<string, string> = {}): Started {
  const tmp = tempDir("npm-start-");
  const env: Record<string, string | undefined> = { ...process.env, DEVSTACK_DIR: tmp.dir, EDGE_PORT: "0" };
  for (const k of ["OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"]) delete env[k];
  Object.assign(env, extraEnv);
  // detached: its own process group, so the signal below reaches npm alone, as `kill <pid>` does.
  const npm = spawn("npm", ["start"], { cwd: REPO, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  npm.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  npm.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const s = { npm, out: () => out, dir: tmp.dir, remove: tmp.remove };
  started.push(s);
  return s;
}

/** Every live descendant of `root` (children, grandchildren…), from /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = connect(port, "127.0.0.1");
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });

async function upAndRunning(s: Started) {
  await waitFor(
    "npm start's banner",
    () => /is up \(/.test(s.out()) || s.npm.exitCode !== null,
    240_000,
    250,
  );
  expect(s.npm.exitCode, s.out()).toBeNull();
  const edgeUrl = /^\s+edge\s+(http:\S+)$/m.exec(s.out())?.[1];
  const token = /^\s+TENANT_A=(\S+)$/m.exec(s.out())?.[1];
  expect(edgeUrl, s.out()).toBeDefined();
  expect(token, s.out()).toBeDefined();
  return { edgeUrl: edgeUrl!, token: token!, port: Number(new URL(edgeUrl!).port) };
}

/** `to: "group"` is Ctrl-C in a terminal: the signal reaches every process of the foreground group. */
async function stopsWholeStack(
  s: Started,
  signal: "SIGINT" | "SIGTERM",
  port: number,
  to: "npm" | "group" = "npm",
) {
  const tree = descendants(s.npm.pid!);
  // npm → sh (exec'd into node) → agents, devcluster's kubelet → runc → containers, workerd.
  expect(tree.length, "the stack's processes").toBeGreaterThan(4);
  process.kill(to === "group" ? -s.npm.pid! : s.npm.pid!, signal);
  // Generous: the stack stops its pods one by one; the bound only keeps a hang from eating the suite.
  await waitFor(
    `npm to exit after ${signal}`,
    () => s.npm.exitCode !== null || s.npm.signalCode !== null,
    60_000,
  );
  expect(s.npm.exitCode, s.out()).toBe(0);
  expect(s.out()).toMatch(/^stopped$/m);
  // Orphans would be reparented, not killed: each process of the tree must be gone by itself.
  await waitFor(
    `every process npm start ran to exit after ${signal}`,
    () => tree.filter(alive).length === 0,
    30_000,
  ).catch(() => {
    const left = tree.filter(alive).map((p) => `${p}: ${readFileSync(`/proc/${p}/cmdline`, "utf8")}`);
    throw new Error(`still running after ${signal} to npm:\n${left.join("\n")}`);
  });
  expect(await portOpen(port)).toBe(false);
  expect(existsSync(join(s.dir, "state.json"))).toBe(false);
}

describe("npm start", () => {
  it("with no OPENAI_* set, serves the first chat (scripted stand-in, labelled) and `npm run demo` passes; SIGTERM to npm's pid stops it all", async () => {
    const s = startNpm();
    const { edgeUrl, token, port } = await upAndRunning(s);
    expect(s.out()).toContain("SCRIPTED STAND-IN, not a language model");
    expect(s.out()).toContain(`${edgeUrl}/chat`);

    // The README's first copy-paste command, as printed (curl's default content type).
    const chat = await fetch(`${edgeUrl}/chat`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/x-www-form-urlencoded" },
      body: '{"message":"Run pwd and ls in the sandbox"}',
      signal: AbortSignal.timeout(60_000),
    });
    const body = await chat.text();
    expect(chat.status, body).toBe(200);
    expect(body).toContain("not a language model");
    expect(body).toContain("/workspace");

    const demo = await runProcess("npm", ["run", "demo"], {
      cwd: REPO,
      env: { DEVSTACK_DIR: s.dir },
      timeoutMs: 120_000,
    });
    expect(demo.out).toContain(`using the running stack at ${edgeUrl}`);
    expect(demo.code, demo.out).toBe(0);
    expect(demo.out).toMatch(/^\s+tool\./m);
    expect(demo.out).toContain("demo OK");

    await stopsWholeStack(s, "SIGTERM", port);
  }, 420_000);

  it("with a model half-configured, the banner says so and suggests no chat; `npm run demo` exits 1 with the fix", async () => {
    const s = startNpm({ OPENAI_MODEL: "some-model" }); // no OPENAI_BASE_URL, no OPENAI_API_KEY
    const { edgeUrl, port } = await upAndRunning(s);
    expect(s.out()).toMatch(/chat\s+NOT CONFIGURED: .*OPENAI_BASE_URL/);
    expect(s.out()).not.toContain(`${edgeUrl}/chat`);
    expect(s.out()).not.toContain("npm run demo");
    const demo = await runProcess("npm", ["run", "demo"], {
      cwd: REPO,
      env: { DEVSTACK_DIR: s.dir },
      timeoutMs: 120_000,
    });
    expect(demo.code, demo.out).toBe(1);
    expect(demo.out).toMatch(/demo FAILED: chat failed \(503\): chat has no model .*`npm start`/);
    await stopsWholeStack(s, "SIGTERM", port);
  }, 300_000);

  it("SIGINT to npm's pid (a backgrounded `npm start`) stops it all", async () => {
    const s = startNpm();
    const { port } = await upAndRunning(s);
    await stopsWholeStack(s, "SIGINT", port);
  }, 300_000);

  it("Ctrl-C in the foreground (SIGINT to the whole process group) stops it all", async () => {
    const s = startNpm();
    const { port } = await upAndRunning(s);
    await stopsWholeStack(s, "SIGINT", port, "group");
  }, 300_000);
});
