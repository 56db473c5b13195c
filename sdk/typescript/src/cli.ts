// `pi-sandbox`: the command line over the client. Node-only (files, process); the client is not.
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { constants } from "node:os";
import { Readable, Writable } from "node:stream";
import { parseArgs } from "node:util";
import { runAttach } from "./cli-attach.ts";
import { resolveTarget } from "./cli-config.ts";
import { describeError, EXIT, exitCodeOf } from "./cli-messages.ts";
import { SandboxClient } from "./client.ts";
import { SandboxApiError } from "./errors.ts";
import {
  type ExecResult,
  PROCESS_SIGNALS,
  type ProcessInfo,
  type ProcessSignal,
  type SandboxInfo,
} from "./types.ts";

const USAGE = `usage: pi-sandbox <command> [flags]

  exec [--sandbox ID] [--timeout S] [--cwd DIR] [--allow HOST…] [--deny HOST…] -- CMD [ARG…]
                              run a command, stream its output, exit with its exit code
                              (--allow/--deny: this call's network; a sandbox's: sandbox network)
  sandbox create [--name N] [--idle S] [--max-lifetime S] [--allow HOST…] [--deny HOST…] [--secret NAME…]
  sandbox list [--name N]     sandbox get ID      sandbox rm ID…
  sandbox network ID [--allow HOST…] [--deny HOST…]
                              show its network policy, or replace it when given --allow/--deny
  secrets put NAME --host HOST… [--header H] [--format F]
                              store a secret; its value is read from stdin (never an argument)
  secrets list                secrets rm NAME…
  cp LOCAL ID:PATH            upload a file          cp ID:PATH LOCAL   download one
  ls ID[:DIR]                 list a sandbox directory
  chat [--session ID] [--allow HOST…] MESSAGE
                              stream a chat reply and each tool call
  port open ID PORT [--ttl S] [--public]
                              an expiring link to a sandbox's port; prints its URL
  port ls ID                  its open links      port rm ID PORT LINK_ID   revoke one
  pool [--region R]           the pool of every region (needs sandbox:admin)
  start ID [--tty] [--cwd DIR] [--timeout S] -- CMD [ARG…]
                              start a long-lived process in a sandbox; prints its pid
  ps ID                       the sandbox's processes (running, then recently exited)
  logs [-f] [--since N] ID PID
                              a process's output; -f follows it (reattaching) until it exits,
                              then exits with its exit code
  attach [--since N] ID PID   an interactive terminal to a process started with --tty; Ctrl-]
                              detaches (it runs on); exits with its exit code when it ends
  kill [--signal SIG] ID PID  kill its process group and forget it; --signal only sends SIG

  --url URL --token JWT       or PI_SANDBOX_URL / PI_SANDBOX_TOKEN, or .devstack/state.json
  --region R                  X-Sandbox-Region
  --json                      machine-readable output on stdout
  --retries N                 retries of 429/503 (default 2; 0 = off)

exit codes: exec → the command's own (124 timed out, 128+N killed by signal N);
  64 usage, 65 invalid request, 66 not found, 69 unavailable, 70 unexpected answer,
  75 try again later (rate limited, no free pod), 77 not allowed (401/403), 78 no URL/token`;

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Where `secrets put` reads the value. */
  stdin?: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

const defaultIo = (): CliIo => ({
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
});

class UsageError extends Error {}

/** Quote for /bin/sh so `exec -- ls "a b"` reaches the pod as two words, not three. */
export function shellJoin(args: string[]): string {
  if (args.length === 1) return args[0]!;
  return args
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(" ");
}

/** The exit status a shell would report for this result. */
export function exitStatusOf(r: Pick<ExecResult, "exitCode" | "signal" | "timedOut">): number {
  if (r.timedOut) return EXIT.commandTimedOut;
  if (r.exitCode !== null) return r.exitCode;
  const n = r.signal ? (constants.signals as Record<string, number | undefined>)[r.signal] : undefined;
  return n !== undefined ? 128 + n : 1;
}

const intFlag = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} takes a whole number, got ${v}`);
  return Number(v);
};

/** `--allow`/`--deny` as a network policy, or undefined when neither was given. */
function networkFlags(f: { allow?: string[] | undefined; deny?: string[] | undefined }) {
  if (!f.allow?.length && !f.deny?.length) return undefined;
  return { ...(f.allow?.length ? { allow: f.allow } : {}), ...(f.deny?.length ? { deny: f.deny } : {}) };
}

/** All of stdin as text, less one trailing newline (`echo $KEY | pi-sandbox secrets put …`). */
async function readValue(stdin: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stdin) throw new UsageError("secrets put reads the value from stdin");
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** `ID:PATH` → its parts; anything else is a local path. */
function remote(spec: string): { id: string; path: string } | undefined {
  const m = /^([A-Za-z0-9_.-]+):(.*)$/.exec(spec);
  return m ? { id: m[1]!, path: m[2]! } : undefined;
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const out = (s: string) => io.stdout.write(s);
  const json = (v: unknown) => out(`${JSON.stringify(v, null, 2)}\n`);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    io.stderr.write(`pi-sandbox: ${e instanceof Error ? e.message : String(e)}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values: f, positionals: pos } = parsed;
  const [command, ...rest] = pos;
  if (f.help || !command) {
    (f.help ? io.stdout : io.stderr).write(`${USAGE}\n`);
    return f.help ? EXIT.ok : EXIT.usage;
  }
  const target = resolveTarget(f, io.env, io.cwd, command === "pool");
  if ("error" in target) {
    io.stderr.write(`pi-sandbox: ${target.error}\n`);
    return EXIT.config;
  }
  try {
    const client = new SandboxClient({
      baseUrl: target.url,
      token: target.token,
      ...(f.region ? { region: f.region } : {}),
      ...(f.retries !== undefined ? { retries: intFlag(f.retries, "retries")! } : {}),
    });
    const timeoutSeconds = intFlag(f.timeout, "timeout");
    switch (command) {
      case "exec": {
        if (rest.length === 0) throw new UsageError("exec needs a command after --");
        const network = networkFlags(f);
        if (network && f.sandbox)
          throw new UsageError(
            "--allow/--deny on a sandbox's exec: its policy is `sandbox network ID --allow …`",
          );
        const opts = {
          ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
          ...(f.cwd ? { cwd: f.cwd } : {}),
          ...(network ? { network } : {}),
        };
        const sandbox = f.sandbox ? await client.sandboxes.get(f.sandbox) : undefined;
        const cmd = shellJoin(rest);
        if (f.json) {
          // Ctrl-C while waiting for the answer: the client cancels the request at the edge (its
          // command is killed, its pod freed) before this process exits 130.
          const interrupted = new AbortController();
          const onSigint = () => interrupted.abort();
          process.once("SIGINT", onSigint);
          try {
            const call = { ...opts, signal: interrupted.signal };
            const r = await (sandbox ? sandbox.exec(cmd, call) : client.exec(cmd, call));
            json(r);
            return exitStatusOf(r);
          } catch (e) {
            if (interrupted.signal.aborted) {
              await new Promise((r) => setTimeout(r, 500));
              return 130;
            }
            throw e;
          } finally {
            process.off("SIGINT", onSigint);
          }
        }
        const events = sandbox ? sandbox.execStream(cmd, opts) : client.execStream(cmd, opts);
        for await (const e of events) {
          if (e.type === "stdout") io.stdout.write(e.data);
          else if (e.type === "stderr") io.stderr.write(e.data);
          else if (e.type === "result") {
            if (e.result.truncated) {
              io.stderr.write(
                `pi-sandbox: output truncated (stdout ${e.result.stdoutBytes} B, stderr ${e.result.stderrBytes} B in all)\n`,
              );
            }
            if (e.result.timedOut) io.stderr.write("pi-sandbox: the command timed out and was killed\n");
            return exitStatusOf(e.result);
          }
        }
        return EXIT.software; // unreachable: the stream throws if it ends without a result
      }
      case "sandbox": {
        const [sub, ...ids] = rest;
        if (sub === "create") {
          const sb = await client.sandboxes.create({
            ...(f.name ? { name: f.name } : {}),
            ...(f.idle !== undefined ? { idleTimeoutSeconds: intFlag(f.idle, "idle")! } : {}),
            ...(f["max-lifetime"] !== undefined
              ? { maxLifetimeSeconds: intFlag(f["max-lifetime"], "max-lifetime")! }
              : {}),
            ...(networkFlags(f) ? { network: networkFlags(f) } : {}),
            ...(f.secret?.length ? { secrets: f.secret } : {}),
          });
          if (f.json) json(sb.info);
          else out(`${sb.id}\n`);
          return EXIT.ok;
        }
        if (sub === "list") {
          const list = await client.sandboxes.list(f.name ? { name: f.name } : {});
          if (f.json) json({ sandboxes: list.map((s) => s.info) });
          else for (const s of list) out(`${sandboxLine(s.info)}\n`);
          return EXIT.ok;
        }
        if (sub === "get") {
          if (ids.length !== 1) throw new UsageError("sandbox get takes one id");
          const sb = await client.sandboxes.get(ids[0]!);
          if (f.json) json(sb.info);
          else out(`${sandboxLine(sb.info)}\n`);
          return EXIT.ok;
        }
        if (sub === "rm") {
          if (ids.length === 0) throw new UsageError("sandbox rm takes one or more ids");
          for (const id of ids) await client.sandboxes.remove(id);
          if (f.json) json({ removed: ids });
          return EXIT.ok;
        }
        if (sub === "network") {
          if (ids.length !== 1) throw new UsageError("sandbox network takes one id");
          const sb = await client.sandboxes.get(ids[0]!);
          const wanted = networkFlags(f);
          const policy = wanted ? await sb.setNetwork(wanted) : await sb.network();
          if (f.json) json(policy);
          else {
            for (const a of policy.allow) out(`allow ${a}\n`);
            for (const d of policy.deny) out(`deny  ${d}\n`);
            if (policy.allow.length === 0) out("(no network)\n");
          }
          return EXIT.ok;
        }
        throw new UsageError("sandbox takes create, list, get, rm or network");
      }
      case "secrets": {
        const [sub, ...names] = rest;
        if (sub === "put") {
          if (names.length !== 1) throw new UsageError("secrets put takes one name");
          if (!f.host?.length) throw new UsageError("secrets put needs --host (where the value may be sent)");
          const value = await readValue(io.stdin);
          const info = await client.secrets.put(names[0]!, {
            value,
            hosts: f.host,
            ...(f.header ? { header: f.header } : {}),
            ...(f.format ? { format: f.format } : {}),
          });
          if (f.json) json(info);
          else out(`${info.name}  ${info.hosts.join(",")}  ${info.header}: ${info.format}\n`);
          return EXIT.ok;
        }
        if (sub === "list") {
          const list = await client.secrets.list();
          if (f.json) json({ secrets: list });
          else for (const x of list) out(`${x.name}  ${x.hosts.join(",")}  ${x.header}  ${x.updatedAt}\n`);
          return EXIT.ok;
        }
        if (sub === "rm") {
          if (names.length === 0) throw new UsageError("secrets rm takes one or more names");
          for (const n of names) await client.secrets.remove(n);
          if (f.json) json({ removed: names });
          return EXIT.ok;
        }
        throw new UsageError("secrets takes put, list or rm");
      }
      case "cp": {
        if (rest.length !== 2) throw new UsageError("cp takes a source and a destination");
        const [from, to] = [rest[0]!, rest[1]!];
        const src = remote(from);
        const dst = remote(to);
        if (src && dst)
          throw new UsageError("cp copies between this machine and a sandbox, not between sandboxes");
        if (!src && !dst) throw new UsageError("one side of cp must be ID:PATH");
        if (dst) {
          let size: number;
          try {
            size = statSync(from).size;
          } catch {
            io.stderr.write(`pi-sandbox: no such local file: ${from}\n`);
            return EXIT.notFound;
          }
          const sb = await client.sandboxes.get(dst.id);
          const body = Readable.toWeb(createReadStream(from)) as ReadableStream<Uint8Array>;
          const r = await sb.files.write(dst.path, size === 0 ? new Uint8Array() : body);
          if (f.json) json(r);
          return EXIT.ok;
        }
        const sb = await client.sandboxes.get(src!.id);
        const stream = await sb.files.read(src!.path, { as: "stream" });
        await stream.pipeTo(Writable.toWeb(createWriteStream(to)) as WritableStream<Uint8Array>);
        if (f.json) json({ path: to, size: statSync(to).size });
        return EXIT.ok;
      }
      case "ls": {
        const r = rest.length === 1 ? remote(rest[0]!.includes(":") ? rest[0]! : `${rest[0]!}:`) : undefined;
        if (!r) throw new UsageError("ls takes ID or ID:DIR");
        const sb = await client.sandboxes.get(r.id);
        const entries = await sb.files.list(r.path);
        if (f.json) json({ entries });
        else
          for (const e of entries)
            out(
              `${e.type === "dir" ? "d" : e.type === "symlink" ? "l" : "-"} ${String(e.size).padStart(10)} ${e.name}\n`,
            );
        return EXIT.ok;
      }
      case "chat": {
        if (rest.length === 0) throw new UsageError('chat takes a message: pi-sandbox chat "…"');
        const message = rest.join(" ");
        const network = networkFlags(f);
        const base = {
          ...(f.session ? { sessionId: f.session } : {}),
          ...(f.sandbox ? { sandbox: f.sandbox } : {}),
          ...(network ? { network } : {}),
        };
        if (f.json) {
          json(await client.chat(message, base));
          return EXIT.ok;
        }
        let streamedText = false;
        for await (const e of client.chat(message, { ...base, stream: true })) {
          if (e.type === "tool.call") io.stderr.write(`$ ${e.command}\n`);
          else if (e.type === "tool.result") {
            io.stderr.write(
              `→ exit ${e.exitCode ?? "none"} in ${Math.round(e.durationMs)} ms${e.timedOut ? ", timed out" : ""}${e.truncated ? ", truncated" : ""}\n`,
            );
            // open_port_link: the URL is for the user (the model never sees it).
            if (e.link?.url) io.stderr.write(`→ port ${e.link.port}: ${e.link.url}\n`);
          } else if (e.type === "assistant.delta") {
            io.stdout.write(e.text);
            streamedText = true;
          } else if (e.type === "assistant.message" && !streamedText) io.stdout.write(e.text);
          else if (e.type === "done") {
            io.stdout.write("\n");
            io.stderr.write(`session ${e.response.sessionId}\n`);
          }
        }
        return EXIT.ok;
      }
      case "port": {
        const [sub, id, port, linkId] = rest;
        const portOf = (v: string | undefined) => {
          const n = intFlag(v, "port");
          if (n === undefined) throw new UsageError(`port ${sub} needs a port`);
          return n;
        };
        if (!id) throw new UsageError("port takes open, ls or rm and a sandbox id");
        const sb = await client.sandboxes.get(id);
        if (sub === "open") {
          const link = await sb.ports.link(portOf(port), {
            ...(f.ttl !== undefined ? { ttlSeconds: intFlag(f.ttl, "ttl")! } : {}),
            ...(f.public ? { public: true } : {}),
          });
          if (f.json) json(link);
          else out(`${link.url}\n`);
          return EXIT.ok;
        }
        if (sub === "ls") {
          const links = await sb.ports.links();
          if (f.json) json({ links });
          else
            for (const l of links)
              out(
                `${l.id}  ${l.port}  ${l.public ? "public " : "private"}  expires ${l.expiresAt}  ${l.url}\n`,
              );
          return EXIT.ok;
        }
        if (sub === "rm") {
          if (!linkId) throw new UsageError("port rm takes ID PORT LINK_ID");
          await sb.ports.revoke({ id: linkId, port: portOf(port) });
          if (f.json) json({ revoked: linkId });
          return EXIT.ok;
        }
        throw new UsageError("port takes open, ls or rm");
      }
      case "pool": {
        const overview = await client.pool(f.region ? { region: f.region } : {});
        if (f.json) json(overview);
        else {
          for (const r of overview.regions) {
            if (!r.pool) {
              out(`${r.region}: ${r.error?.code ?? "no answer"}: ${r.error?.message ?? ""}\n`);
              continue;
            }
            const by: Record<string, number> = {};
            for (const p of r.pool.pods) by[p.state] = (by[p.state] ?? 0) + 1;
            const states = Object.entries(by)
              .map(([k, v]) => `${v} ${k}`)
              .join(", ");
            out(
              `${r.region}: ${r.pool.pods.length} pods (${states || "none"}), queue ${r.pool.queue.depth}, agent ${r.pool.agentId}\n`,
            );
            for (const p of r.pool.pods)
              out(`  ${p.name}  ${p.state}${p.holder ? `  ${p.holder.tenant}` : ""}\n`);
          }
        }
        return overview.regions.every((r) => r.pool) ? EXIT.ok : EXIT.unavailable;
      }
      case "start": {
        const [id, ...cmd] = rest;
        if (!id || cmd.length === 0) throw new UsageError("start takes a sandbox id and a command after --");
        const sb = await client.sandboxes.get(id);
        const p = await sb.processes.start({
          command: shellJoin(cmd),
          ...(f.cwd ? { cwd: f.cwd } : {}),
          ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
          ...(f.tty ? { tty: true } : {}),
        });
        if (f.json) json(p.info);
        else out(`${p.pid}\n`);
        return EXIT.ok;
      }
      case "ps": {
        if (rest.length !== 1) throw new UsageError("ps takes one sandbox id");
        const sb = await client.sandboxes.get(rest[0]!);
        const list = await sb.processes.list();
        if (f.json) json({ processes: list.map((p) => p.info) });
        else {
          out(`${"PID".padStart(7)}  ${"STATE".padEnd(12)}  ${"OUTPUT".padStart(10)}  COMMAND\n`);
          for (const { info: p } of list) {
            out(
              `${String(p.pid).padStart(7)}  ${processState(p).padEnd(12)}  ${String(p.outputBytes).padStart(10)}  ${p.command ?? (p.argv ?? []).join(" ")}\n`,
            );
          }
        }
        return EXIT.ok;
      }
      case "logs": {
        const { id, pid } = sandboxAndPid(rest, "logs");
        const sb = await client.sandboxes.get(id);
        const p = await sb.processes.get(pid);
        let since = intFlag(f.since, "since") ?? 0;
        const dropped = (n: number) => {
          if (n > 0)
            io.stderr.write(`pi-sandbox: ${n} bytes of output had already left the sandbox's buffer\n`);
        };
        if (!f.follow) {
          // What is there now, in reads of at most 1 MiB.
          for (;;) {
            const r = await p.read({ since });
            dropped(r.dropped);
            io.stdout.write(r.bytes);
            if (r.next === since || r.eof) return EXIT.ok;
            since = r.next;
          }
        }
        // Ctrl-C ends the following, not the process.
        const stop = new AbortController();
        const onSigint = () => stop.abort();
        process.once("SIGINT", onSigint);
        try {
          for await (const chunk of p.output({ since, signal: stop.signal })) {
            dropped(chunk.dropped);
            io.stdout.write(chunk.bytes);
          }
        } catch (e) {
          if (stop.signal.aborted) return 130;
          throw e;
        } finally {
          process.off("SIGINT", onSigint);
        }
        return p.exit ? exitStatusOf(p.exit) : EXIT.software;
      }
      case "attach": {
        const { id, pid } = sandboxAndPid(rest, "attach");
        const since = intFlag(f.since, "since");
        const sb = await client.sandboxes.get(id);
        const t = await sb.processes.attach(pid, since !== undefined ? { since } : {});
        const end = await runAttach(t, io);
        if (end.exit) return exitStatusOf(end.exit);
        if (end.detached) {
          io.stderr.write(`pi-sandbox: detached; ${pid} runs on (pi-sandbox attach ${id} ${pid})\n`);
          return EXIT.ok;
        }
        io.stderr.write(`pi-sandbox: the terminal closed (${end.code} ${end.reason || "no reason"})\n`);
        return EXIT.unavailable;
      }
      case "kill": {
        const { id, pid } = sandboxAndPid(rest, "kill");
        // A usage error before any request.
        const sig = f.signal !== undefined ? signalName(f.signal) : undefined;
        const sb = await client.sandboxes.get(id);
        const p = await sb.processes.get(pid);
        const info = sig ? await p.signal(sig) : await p.kill();
        if (f.json) json(info);
        else out(`${info.pid}  ${processState(info)}\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`pi-sandbox: ${e.message}\n\n${USAGE}\n`);
      return EXIT.usage;
    }
    if (e instanceof SandboxApiError) {
      io.stderr.write(`${describeError(e)}\n`);
      if (f.json)
        json({ error: { code: e.code, message: e.message, status: e.status, requestId: e.requestId } });
      return exitCodeOf(e);
    }
    io.stderr.write(`pi-sandbox: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.software;
  }
}

/** How a process stands, as `ps` and `kill` show it. */
function processState(p: ProcessInfo): string {
  if (p.running) return "running";
  if (p.timedOut) return "timed out";
  return p.exitCode !== null ? `exited ${p.exitCode}` : `killed ${p.signal ?? ""}`.trim();
}

function sandboxAndPid(rest: string[], what: string): { id: string; pid: number } {
  if (rest.length !== 2 || !/^[1-9]\d*$/.test(rest[1]!)) {
    throw new UsageError(`${what} takes a sandbox id and a pid`);
  }
  return { id: rest[0]!, pid: Number(rest[1]) };
}

/** `TERM`, `sigterm` or `SIGTERM`; anything else is a usage error naming the allowed ones. */
function signalName(v: string): ProcessSignal {
  const name = (
    v.toUpperCase().startsWith("SIG") ? v.toUpperCase() : `SIG${v.toUpperCase()}`
  ) as ProcessSignal;
  if (!PROCESS_SIGNALS.includes(name))
    throw new UsageError(`--signal takes one of ${PROCESS_SIGNALS.join(", ")}`);
  return name;
}

function sandboxLine(s: SandboxInfo): string {
  return `${s.id}  ${s.name ?? "-"}  ${s.state}  ${s.region}/${s.pod}  idle ${s.idleTimeoutSeconds}s  expires ${s.expiresAt}`;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      url: { type: "string" },
      token: { type: "string" },
      state: { type: "string" },
      region: { type: "string" },
      json: { type: "boolean" },
      retries: { type: "string" },
      sandbox: { type: "string" },
      timeout: { type: "string" },
      cwd: { type: "string" },
      name: { type: "string" },
      idle: { type: "string" },
      "max-lifetime": { type: "string" },
      session: { type: "string" },
      allow: { type: "string", multiple: true },
      deny: { type: "string", multiple: true },
      secret: { type: "string", multiple: true },
      host: { type: "string", multiple: true },
      header: { type: "string" },
      format: { type: "string" },
      tty: { type: "boolean" },
      follow: { type: "boolean", short: "f" },
      since: { type: "string" },
      signal: { type: "string" },
      ttl: { type: "string" },
      public: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}
