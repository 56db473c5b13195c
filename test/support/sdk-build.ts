import { fileURLToPath } from "node:url";
import { runProcess } from "./run-process.ts";

/** Builds @pi-sandbox/client's dist/ (what its bin and its package name load), as `npm run build` does. */
export async function buildTsClient(): Promise<void> {
  const tsc = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url));
  const r = await runProcess(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
    cwd: fileURLToPath(new URL("../../sdk/typescript/", import.meta.url)),
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`building the TypeScript client failed:\n${r.stdout}${r.stderr}`);
}
