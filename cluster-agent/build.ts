import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..");

export interface AgentBundle {
  /** Absolute path of the bundled entry (`main.mjs`). */
  outfile: string;
  /** Bare package imports left external: the runtime must provide them (node_modules). */
  externals: string[];
}

/**
 * Bundles cluster-agent/main.ts into one ESM file with node_modules left external: the one build
 * both devstack (agent replicas as child processes) and k8s/images/agent.Dockerfile use.
 * Relative `outfile` is taken from the repository root.
 */
export async function buildAgentBundle(outfile = "dist/agent/main.mjs"): Promise<AgentBundle> {
  const out = resolve(repoRoot, outfile);
  const result = await build({
    entryPoints: [resolve(here, "main.ts")],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "inline",
    metafile: true,
    logLevel: "silent",
  });
  const externals = new Set<string>();
  for (const o of Object.values(result.metafile.outputs)) {
    for (const i of o.imports) if (i.external && !i.path.startsWith("node:")) externals.add(i.path);
  }
  return { outfile: out, externals: [...externals].sort() };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildAgentBundle(process.argv[2]).then((b) => process.stdout.write(`${b.outfile}\n`));
}
