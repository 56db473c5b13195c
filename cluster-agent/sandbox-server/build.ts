import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../..");

/**
 * Bundles the exec server into one dependency-free `server.mjs` (the whole sandbox "image" for
 * devcluster, bind-mounted at /opt/sandbox-server). Idempotent: rebuilding overwrites the file.
 * Relative `outDir` is taken from the repository root, so callers in any cwd get the same place.
 */
export async function buildSandboxImage(outDir = "dist/sandbox-image"): Promise<string> {
  const out = resolve(repoRoot, outDir);
  await mkdir(out, { recursive: true });
  await build({
    entryPoints: [resolve(here, "server.ts")],
    outfile: resolve(out, "server.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Only node: built-ins may remain as imports; anything else is a bundling mistake.
    packages: "bundle",
    external: ["node:*"],
    legalComments: "none",
    logLevel: "silent",
  });
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildSandboxImage(process.argv[2]).then((dir) => process.stdout.write(`${dir}/server.mjs\n`));
}
