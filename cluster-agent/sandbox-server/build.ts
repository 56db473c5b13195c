import { existsSync } from "node:fs";
import { chmod, copyFile, link, mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../..");

/**
 * The node that runs this build: the repository's pinned Node (package.json's devDependency, the
 * image's node:24 in a Docker build). Not the host's /usr/bin/node, which can be older: Node 20
 * took ~20 ms more CPU to start the server than Node 24, and every replace-mode pod pays that.
 */
function imageNode(): string {
  return process.execPath;
}

/**
 * Node built-ins are loaded with `require`, not `import`: an ESM import of a built-in builds its
 * ESM facade, which reads every export — lazy ones too, so `node:http` loads all of undici on
 * Node 24 (its `WebSocket`/`EventSource` getters) and `node:crypto` webcrypto on Node 20. That
 * was ~20 ms of CPU per server start, paid by every pod.
 */
const builtinsByRequire: Plugin = {
  name: "builtins-by-require",
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) =>
      a.kind === "require-call" ? { path: a.path, external: true } : { path: a.path, namespace: "builtin" },
    );
    b.onLoad({ filter: /.*/, namespace: "builtin" }, (a) => ({
      contents: `module.exports = require(${JSON.stringify(a.path)});`,
      loader: "js",
    }));
  },
};
const REQUIRE_BANNER = [
  'import { createRequire as __createRequire } from "node:module";',
  "const require = __createRequire(import.meta.url);",
].join("\n");

/**
 * `<out>/node`: an execute-only (0111) copy of node. The kernel makes a process that execs an
 * unreadable binary non-dumpable, so commands (same uid) cannot ptrace the exec server or open its
 * /proc/<pid>/mem (self-protection.ts). ~100 MB, so it is copied once per node version into
 * dist/sandbox-node and hard-linked into each image directory (copied when on another file system).
 */
async function placeExecOnlyNode(out: string): Promise<void> {
  const src = imageNode();
  const st = await stat(src);
  const cacheDir = resolve(repoRoot, "dist/sandbox-node");
  const cached = resolve(cacheDir, `node-${st.size}-${Math.trunc(st.mtimeMs)}`);
  if (!existsSync(cached)) {
    await mkdir(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    await copyFile(src, tmp);
    await chmod(tmp, 0o111);
    await rename(tmp, cached); // atomic: parallel builders never see half a binary
  }
  const target = resolve(out, "node");
  await rm(target, { force: true });
  try {
    await link(cached, target);
  } catch {
    await copyFile(cached, target);
    await chmod(target, 0o111);
  }
}

/**
 * Bundles the exec server into one dependency-free `server.mjs` and places the execute-only `node`
 * that runs it: the whole sandbox "image" for devcluster, bind-mounted at /opt/sandbox-server.
 * Idempotent: rebuilding overwrites both. Relative `outDir` is taken from the repository root, so
 * callers in any cwd get the same place.
 */
export async function buildSandboxImage(outDir = "dist/sandbox-image"): Promise<string> {
  const out = resolve(repoRoot, outDir);
  await mkdir(out, { recursive: true });
  await placeExecOnlyNode(out);
  await build({
    entryPoints: [resolve(here, "server.ts")],
    outfile: resolve(out, "server.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Only node: built-ins may remain (as require calls); anything else is a bundling mistake.
    packages: "bundle",
    plugins: [builtinsByRequire],
    banner: { js: REQUIRE_BANNER },
    legalComments: "none",
    logLevel: "silent",
  });
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildSandboxImage(process.argv[2]).then((dir) => process.stdout.write(`${dir}/server.mjs\n`));
}
