import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type Stack, startStack } from "../../devstack/stack.ts";
import { main } from "../../sdk/typescript/src/cli.ts";
import { type ProcessInfo, type Sandbox, TERMINAL_SUBPROTOCOL } from "../../shared/api.ts";
import { edgeApi, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 27 item 2 through the whole stack: the terminal of a tty process as a WebSocket, edge (workerd)
// → TunnelDO → a real agent on the tunnel → the exec server in a devcluster (runc) pod.

const tmp = tempDir("stack-terminal-");
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    dir: tmp.dir,
    regions: ["eu-1"],
    agentsPerRegion: 1,
    poolSize: 1,
    edgeVars: { TENANT_QUOTA_BURST: "400", TENANT_QUOTA_PER_MINUTE: "6000" },
  });
}, 120_000);

afterAll(async () => {
  await stack?.close();
  tmp.remove();
});

const api = edgeApi(() => stack);

async function json<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`.slice(0, 400)).toMatch(new RegExp(`^${status} `));
  return JSON.parse(text) as T;
}

/** A terminal client: its output as text, its control messages, how it closed. */
interface Term {
  ws: WebSocket;
  out: () => string;
  control: Array<Record<string, unknown>>;
  closed: { code: number; reason: string } | null;
  /** Waits until the output (from `from` on) matches `re`; returns the match. */
  until(re: RegExp, from?: number): Promise<RegExpMatchArray>;
}

/** Open the terminal as a browser would: the token as a `bearer.` subprotocol next to ours. */
function openTerm(path: string, token = stack.tokens.tenantA): Promise<Term> {
  return new Promise((resolve, reject) => {
    const url = `${stack.edgeUrl.replace(/^http/, "ws")}${path}`;
    const ws = new WebSocket(url, [TERMINAL_SUBPROTOCOL, `bearer.${token}`]);
    let text = "";
    const t: Term = {
      ws,
      out: () => text,
      control: [],
      closed: null,
      until: (re, from = 0) =>
        waitFor(`terminal output ${re}`, () => text.slice(from).match(re) ?? undefined, 20_000, 20),
    };
    ws.on("message", (data, isBinary) => {
      if (isBinary) text += Buffer.from(data as Buffer).toString("latin1");
      else t.control.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    ws.on("close", (code, reason) => {
      t.closed = { code, reason: reason.toString() };
    });
    ws.on("open", () => resolve(t));
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => reject(new Refused(res.statusCode ?? 0, body)));
    });
    ws.on("error", (e) => reject(e));
  });
}

/** Start a process in sandbox `id` with this body (argv, tty…). */
const startProcess = async (id: string, body: object) =>
  json<ProcessInfo>(
    await api(`/v1/sandboxes/${id}/processes`, { method: "POST", body: JSON.stringify(body) }),
    201,
  );

class Refused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`refused ${status}: ${body}`);
  }
  get code(): string {
    return (JSON.parse(this.body) as { error: { code: string } }).error.code;
  }
}

describe("the terminal of a process through the edge", () => {
  let sb: Sandbox;
  let shell: ProcessInfo;
  const tty = () => `/v1/sandboxes/${sb.id}/processes/${shell.pid}/tty`;

  it("an interactive sh: echo hi comes back; the subprotocol selected is ours, never the token", async () => {
    sb = await json<Sandbox>(await api("/v1/sandboxes", { method: "POST", body: "{}" }), 201);
    shell = await startProcess(sb.id, { argv: ["sh"], tty: true, cols: 80, rows: 24 });
    const t = await openTerm(tty());
    expect(t.ws.protocol).toBe(TERMINAL_SUBPROTOCOL);
    t.ws.send(Buffer.from("echo hi\n"));
    // The tty echoes the line typed, then the shell prints hi on its own line.
    await t.until(/\r?\nhi\r?\n/);
    t.ws.close(1000);
    await waitFor("closed", () => t.closed !== null);
  }, 60_000);

  it("a resize message changes what stty size reports", async () => {
    const t = await openTerm(tty());
    const from = t.out().length;
    t.ws.send(JSON.stringify({ type: "resize", cols: 101, rows: 37 }));
    t.ws.send(Buffer.from("stty size\n"));
    await t.until(/\r?\n37 101\r?\n/, from);
    // A malformed control message is answered, and the terminal stays open.
    t.ws.send("not json");
    await waitFor("an error message", () => t.control.find((m) => m.type === "error"));
    expect(t.control.find((m) => m.type === "error")).toMatchObject({ code: "invalid_request" });
    t.ws.close(1000);
    await waitFor("closed", () => t.closed !== null);
  }, 60_000);

  it("closing the socket leaves the process running; a new terminal attaches at an offset", async () => {
    const p = await json<ProcessInfo>(await api(`/v1/sandboxes/${sb.id}/processes/${shell.pid}`));
    expect(p.running).toBe(true);
    // Attach at the end of what was written: nothing old is replayed.
    const t = await openTerm(`${tty()}?since=${p.outputBytes}`);
    t.ws.send(Buffer.from("echo again\n"));
    await t.until(/\r?\nagain\r?\n/);
    expect(t.out()).not.toContain("stty size");
    t.ws.terminate(); // an abrupt client loss, not a close handshake
    await waitFor("the session ended", () => t.closed !== null);
    const after = await json<ProcessInfo>(await api(`/v1/sandboxes/${sb.id}/processes/${shell.pid}`));
    expect(after.running).toBe(true);
  }, 60_000);

  it("the process exiting sends an exit message and closes the terminal with 1000", async () => {
    const t = await openTerm(`${tty()}?since=0`);
    t.ws.send(Buffer.from("exit 3\n"));
    await waitFor("the close", () => t.closed ?? undefined, 20_000, 20);
    expect(t.closed).toEqual({ code: 1000, reason: "exited" });
    expect(t.control.at(-1)).toMatchObject({ type: "exit", exitCode: 3 });
  }, 60_000);

  it("refused before any upgrade: not a tty (409), tenant B (404), an unknown pid (404)", async () => {
    const plain = await startProcess(sb.id, { argv: ["sleep", "30"] });
    const refused = async (path: string, token?: string) => {
      const r = await openTerm(path, token).then(
        (t) => {
          t.ws.terminate();
          return null;
        },
        (e: unknown) => e,
      );
      expect(r).toBeInstanceOf(Refused);
      return r as Refused;
    };
    const notTty = await refused(`/v1/sandboxes/${sb.id}/processes/${plain.pid}/tty`);
    expect([notTty.status, notTty.code]).toEqual([409, "not_a_tty"]);
    const other = await refused(tty(), stack.tokens.tenantB);
    expect([other.status, other.code]).toEqual([404, "sandbox_not_found"]);
    const unknown = await refused(`/v1/sandboxes/${sb.id}/processes/999999/tty`);
    expect([unknown.status, unknown.code]).toEqual([404, "process_not_found"]);
  }, 60_000);
});

describe("pi-sandbox attach (the CLI's main) through the edge", () => {
  let sb: Sandbox;

  /** A stdin that is not a tty (no raw mode), written by the test; the CLI's stdout and stderr as text. */
  function attach(args: string[]) {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = "";
    let err = "";
    stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
    stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = main(["attach", ...args], {
      stdin,
      stdout,
      stderr,
      env: { PI_SANDBOX_URL: stack.edgeUrl, PI_SANDBOX_TOKEN: stack.tokens.tenantA },
      cwd: tmp.dir,
    });
    return {
      stdin,
      code,
      out: () => out,
      err: () => err,
      until: (re: RegExp) => waitFor(`attach output ${re}`, () => out.match(re) ?? undefined, 20_000, 20),
    };
  }

  const startShell = () => startProcess(sb.id, { argv: ["sh"], tty: true });

  it("echo hi comes back, and the exit code of the shell is the CLI's", async () => {
    sb = await json<Sandbox>(await api("/v1/sandboxes", { method: "POST", body: "{}" }), 201);
    const shell = await startShell();
    const a = attach([sb.id, String(shell.pid)]);
    a.stdin.write("echo hi\n");
    await a.until(/\r?\nhi\r?\n/);
    a.stdin.write("exit 3\n");
    expect(await a.code).toBe(3);
    expect(a.err()).toBe("");
  }, 60_000);

  it("Ctrl-] detaches and leaves the process running; the end of piped input is EOF to the shell", async () => {
    const shell = await startShell();
    const a = attach([sb.id, String(shell.pid)]);
    a.stdin.write("echo one\n");
    await a.until(/\r?\none\r?\n/);
    // Bytes before the detach key in the same chunk still reach the process.
    a.stdin.write("echo two\n\x1d");
    expect(await a.code).toBe(0);
    expect(a.err()).toContain(`detached; ${shell.pid} runs on`);
    const p = await json<ProcessInfo>(await api(`/v1/sandboxes/${sb.id}/processes/${shell.pid}`));
    expect(p.running).toBe(true);
    // Reattached past what was seen: "two" ran; stdin ending sends Ctrl-D and sh exits 0.
    const b = attach(["--since", String(p.outputBytes), sb.id, String(shell.pid)]);
    b.stdin.end("echo three\n");
    expect(await b.code).toBe(0);
    expect(b.out()).toMatch(/\r?\nthree\r?\n/);
    expect(b.out()).not.toContain("echo one");
    const after = await json<ProcessInfo>(await api(`/v1/sandboxes/${sb.id}/processes/${shell.pid}`));
    expect(after).toMatchObject({ running: false, exitCode: 0 });
    expect(after.outputBytes).toBeGreaterThan(p.outputBytes);
  }, 60_000);

  it("on a real terminal (util-linux script): raw mode while attached, restored after Ctrl-]; Enter and the window size reach the shell", async () => {
    const shell = await startShell();
    // The CLI from source on this Node, its stdin and stdout a pty; `stty -g` before and after it.
    const cli = `import("./sdk/typescript/src/cli.ts").then(async (m) => { process.exitCode = await m.main(process.argv.slice(1)); })`;
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const line = [process.execPath, "--import", "tsx", "-e", cli, "--", "attach", sb.id, String(shell.pid)]
      .map(q)
      .join(" ");
    const child = spawn(
      "script",
      ["-qfec", `stty -g; stty rows 31 cols 97; ${line}; echo "rc=$?"; stty -g`, "/dev/null"],
      {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        env: { ...process.env, PI_SANDBOX_URL: stack.edgeUrl, PI_SANDBOX_TOKEN: stack.tokens.tenantA },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await waitFor("attached", () => out.includes("Ctrl-] detaches"), 30_000, 20);
      // Raw mode: Enter is a carriage return, which the sandbox's own tty turns into a newline.
      child.stdin.write("echo hi\r");
      // (This pty adds its own \r before each \n: libuv's raw mode keeps output processing.)
      await waitFor("hi", () => /\nhi\r*\n/.test(out), 20_000, 20);
      // This terminal's size went to the sandbox's at attach.
      child.stdin.write("stty size\r");
      await waitFor("the size", () => /\n31 97\r*\n/.test(out), 20_000, 20);
      child.stdin.write("\x1d");
      await waitFor("the exit status", () => out.includes("rc=0"), 20_000, 20);
      child.stdin.end();
      expect(await exited).toBe(0);
    } catch (e) {
      throw new Error(`${String(e)}; the terminal showed: ${JSON.stringify(out)}`);
    } finally {
      child.kill("SIGKILL");
    }
    const modes = out.match(/^[0-9a-f]+(?::[0-9a-f]+){10,}\r?$/gm) ?? [];
    expect(modes.length, out).toBe(2);
    expect(modes[1]).toBe(modes[0]);
    const p = await json<ProcessInfo>(await api(`/v1/sandboxes/${sb.id}/processes/${shell.pid}`));
    expect(p.running).toBe(true);
  }, 90_000);

  it("clear errors: a process without a tty (not_a_tty), an unknown pid (66), a bad pid (64)", async () => {
    const plain = await startProcess(sb.id, { argv: ["sleep", "30"] });
    const notTty = attach([sb.id, String(plain.pid)]);
    expect(await notTty.code).toBe(70);
    expect(notTty.err()).toMatch(/^pi-sandbox: not_a_tty: .*start --tty/);
    const unknown = attach([sb.id, "999999"]);
    expect(await unknown.code).toBe(66);
    expect(unknown.err()).toContain("process_not_found");
    const usage = attach([sb.id, "nope"]);
    expect(await usage.code).toBe(64);
  }, 60_000);
});
