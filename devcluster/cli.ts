import { existsSync } from "node:fs";
import { mkdtemp, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { buildSandboxImage } from "../cluster-agent/sandbox-server/build.ts";
import { ensureSystemDeps } from "../scripts/system-deps.mjs";
import { startDevCluster } from "./devcluster.ts";
import { writeKubeconfig } from "./kubeconfig.ts";

const DEFAULT_KUBECONFIG = ".devcluster/kubeconfig";
const SANDBOX_REPO = "pi-sandbox-runtime/sandbox";

interface Args {
  kubeconfig: string;
  port: number;
  allocatable: { cpu?: string; memory?: string };
}

function parseArgs(argv: string[]): Args {
  let kubeconfig = DEFAULT_KUBECONFIG;
  let port = 0;
  const allocatable: Args["allocatable"] = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--kubeconfig") kubeconfig = next();
    else if (a?.startsWith("--kubeconfig=")) kubeconfig = a.slice("--kubeconfig=".length);
    else if (a === "--port") port = Number(next());
    else if (a === "--cpu") allocatable.cpu = next();
    else if (a === "--memory") allocatable.memory = next();
    else if (a === "--help" || a === "-h") {
      process.stdout.write(
        "usage: npm run devcluster [-- --kubeconfig PATH] [--port N] [--cpu QUANTITY] [--memory QUANTITY]\n" +
          "  --cpu, --memory: the node's allocatable (default: this machine's CPUs and memory)\n",
      );
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  return { kubeconfig: resolve(kubeconfig), port, allocatable };
}

async function main(): Promise<void> {
  if (!ensureSystemDeps({ purposes: ["stack"], entry: "npm run devcluster" })) process.exit(1);
  const args = parseArgs(process.argv.slice(2));
  const state = await mkdtemp(join(tmpdir(), "devcluster-"));
  const kubeconfigDirExisted = existsSync(dirname(args.kubeconfig));
  let cluster: Awaited<ReturnType<typeof startDevCluster>> | undefined;
  let wroteKubeconfig = false;
  const cleanup = async () => {
    await cluster?.close().catch((e: unknown) => process.stderr.write(`devcluster: close: ${String(e)}\n`));
    if (wroteKubeconfig) {
      await rm(args.kubeconfig, { force: true });
      if (!kubeconfigDirExisted) await rmdir(dirname(args.kubeconfig)).catch(() => {});
    }
    await rm(state, { recursive: true, force: true });
  };

  // Signals are handled from the start, so a Ctrl-C during startup also cleans up.
  let stopping: Promise<void> | undefined;
  let started = false;
  const stop = (signal: string) => {
    if (stopping) return;
    process.stdout.write(`devcluster: ${signal}, stopping\n`);
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    stopping = (
      started
        ? Promise.resolve()
        : startup.then(
            () => {},
            () => {},
          )
    ).then(cleanup);
    stopping.then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  const startup = (async () => {
    const image = await buildSandboxImage(join(state, "sandbox-image"));
    cluster = await startDevCluster({
      dir: join(state, "cluster"),
      images: { [SANDBOX_REPO]: { binds: [{ host: image, container: "/opt/sandbox-server" }] } },
      port: args.port,
      allocatable: args.allocatable,
      log: (m) => process.stderr.write(`kubelet: ${m}\n`),
    });
    wroteKubeconfig = true;
    await writeKubeconfig(args.kubeconfig, { server: cluster.apiUrl, token: cluster.token, ca: cluster.ca });
    return cluster;
  })();
  try {
    const c = await startup;
    started = true;
    if (stopping) return;
    process.stdout.write(
      `devcluster: API server ${c.apiUrl}\ndevcluster: state ${state}\ndevcluster: kubeconfig ${args.kubeconfig}\n` +
        `devcluster: export KUBECONFIG=${args.kubeconfig}\ndevcluster: Ctrl-C to stop\n`,
    );
  } catch (err) {
    await cleanup();
    throw err;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`devcluster: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
