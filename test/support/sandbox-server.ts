import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildSandboxImage } from "../../cluster-agent/sandbox-server/build.ts";

/**
 * Starts the real, bundled exec server the way devcluster's kubelet runs a sandbox pod: under
 * bubblewrap with its own PID/user namespaces, uid 1000, no capabilities, read-only root and
 * private tmpfs /workspace and /tmp. `plain: true` runs it as an ordinary child process instead
 * (outside any PID namespace, where /reset must refuse), with WORKSPACE in a temp dir.
 */
export interface SandboxServerHandle {
  host: string;
  port: number;
  url: string;
  token: string;
  /** The workspace directory as the server sees it. */
  workspace: string;
  child: ChildProcess;
  /** stdout+stderr of the server (for failure messages). */
  logs(): string;
  close(): Promise<void>;
}

export interface SandboxServerOptions {
  token?: string;
  outputCapBytes?: number;
  plain?: boolean;
  host?: string;
}

let imageDir: Promise<string> | undefined;

/** One bundle per test process: parallel test files never read a half-written server.mjs. */
export function testImage(): Promise<string> {
  imageDir ??= mkdtemp(join(tmpdir(), "sandbox-image-")).then((d) => buildSandboxImage(d));
  return imageDir;
}

export async function startSandboxServer(opts: SandboxServerOptions = {}): Promise<SandboxServerHandle> {
  const dist = await testImage();
  const token = opts.token ?? "test-pool-token";
  const host = opts.host ?? "127.0.0.1";
  const env: Record<string, string> = {
    POOL_TOKEN: token,
    LISTEN_HOST: host,
    PORT: "0",
    OUTPUT_CAP_BYTES: String(opts.outputCapBytes ?? 1024 * 1024),
  };
  let child: ChildProcess;
  let workspace = "/workspace";
  let scratch: string | undefined;
  if (opts.plain) {
    scratch = await mkdtemp(join(tmpdir(), "sandbox-ws-"));
    workspace = scratch;
    child = spawn(process.execPath, [join(dist, "server.mjs")], {
      env: { ...env, WORKSPACE: workspace, PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } else {
    const setenv = Object.entries({ ...env, WORKSPACE: "/workspace" }).flatMap(([k, v]) => [
      "--setenv",
      k,
      v,
    ]);
    child = spawn(
      "bwrap",
      [
        ...["--tmpfs", "/", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin"],
        ...["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc"],
        ...["--dev", "/dev", "--proc", "/proc", "--ro-bind", dist, "/opt/sandbox-server"],
        ...[
          "--dir",
          "/workspace",
          "--dir",
          "/tmp",
          "--tmpfs",
          "/workspace",
          "--tmpfs",
          "/tmp",
          "--remount-ro",
          "/",
        ],
        ...["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"],
        ...["--uid", "1000", "--gid", "1000", "--cap-drop", "ALL", "--new-session", "--clearenv"],
        ...setenv,
        ...["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--chdir", "/workspace"],
        ...["node", "/opt/sandbox-server/server.mjs"],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
  }
  let log = "";
  child.stderr?.on("data", (c: Buffer) => {
    log += c.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandbox server did not start: ${log}`)), 10_000);
    let buf = "";
    child.stdout?.on("data", (c: Buffer) => {
      log += c.toString();
      buf += c.toString();
      const m = /"msg":"listening"[^\n]*"port":(\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sandbox server exited with ${code}: ${log}`));
    });
  });
  return {
    host,
    port,
    url: `http://${host}:${port}`,
    token,
    workspace,
    child,
    logs: () => log,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        // Killing bubblewrap's init tears down the whole PID namespace with it.
        child.kill("SIGKILL");
        await exited;
      }
      if (scratch) await rm(scratch, { recursive: true, force: true });
    },
  };
}

/** A small fetch wrapper with the pool token and fence filled in and a timeout on every call. */
export function sandboxClient(h: SandboxServerHandle, fence = 1) {
  return async (
    path: string,
    init: { method?: string; body?: unknown; token?: string; fence?: number | null } = {},
  ) => {
    const headers: Record<string, string> = { authorization: `Bearer ${init.token ?? h.token}` };
    const f = init.fence === undefined ? fence : init.fence;
    if (f !== null) headers["x-fence-token"] = String(f);
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${h.url}${path}`, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers,
      body:
        init.body === undefined
          ? undefined
          : typeof init.body === "string"
            ? init.body
            : JSON.stringify(init.body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, text: await res.text() };
  };
}

export interface Frames {
  stdout: Buffer;
  stderr: Buffer;
  result: Record<string, unknown> | undefined;
  order: string[];
}

/** Decodes an /exec ndjson body. */
export function parseFrames(text: string): Frames {
  const out: Frames = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), result: undefined, order: [] };
  for (const line of text.split("\n")) {
    if (!line) continue;
    const f = JSON.parse(line) as Record<string, unknown>;
    out.order.push(String(f.type));
    if (f.type === "stdout") out.stdout = Buffer.concat([out.stdout, Buffer.from(String(f.data), "base64")]);
    else if (f.type === "stderr")
      out.stderr = Buffer.concat([out.stderr, Buffer.from(String(f.data), "base64")]);
    else if (f.type === "result") out.result = f;
  }
  return out;
}
