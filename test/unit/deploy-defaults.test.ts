import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  AGENT_PRIVATE_JWKS,
  RELAY_PRIVATE_JWKS,
  TENANT_ISSUER_PRIVATE_JWK,
} from "../workers/fixtures/test-keys.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "pi-dry-run-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Every piece of committed key material: a public `x`/`n` is enough to recognise a test key. */
const TEST_KEY_MATERIAL = [
  TENANT_ISSUER_PRIVATE_JWK,
  ...Object.values(AGENT_PRIVATE_JWKS),
  ...Object.values(RELAY_PRIVATE_JWKS),
].flatMap((k) => [k.kid, k.x, k.n, k.d].filter((v): v is string => typeof v === "string"));

describe("a plain `wrangler deploy` (the top-level environment)", () => {
  // What the command would upload, without uploading it: no network, no account.
  const run = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", out],
    {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1" },
    },
  );
  const printed = `${run.stdout}${run.stderr}`;
  const vars = [...printed.matchAll(/^env\.(\w+) \((.*)\)\s+Environment Variable/gm)].map((m) => ({
    name: m[1]!,
    value: m[2]!,
  }));

  it("succeeds as a dry run and lists its vars", () => {
    expect(run.status, printed).toBe(0);
    expect(vars.map((v) => v.name)).toContain("ENVIRONMENT");
  });

  it("carries no key: no JWKS, agent or relay keys, nothing of the committed test keys", () => {
    const names = vars.map((v) => v.name);
    for (const key of ["JWT_JWKS", "AGENT_PUBLIC_KEYS", "RELAY_PRIVATE_KEYS"])
      expect(names).not.toContain(key);
    const bundle = readFileSync(join(out, "index.js"), "utf8");
    for (const material of TEST_KEY_MATERIAL) {
      expect(printed.includes(material), `printed config holds ${material.slice(0, 12)}…`).toBe(false);
      expect(bundle.includes(material), `bundle holds ${material.slice(0, 12)}…`).toBe(false);
    }
  });

  it("is a dev environment, so even with keys added it would answer only on local hostnames", () => {
    expect(vars.find((v) => v.name === "ENVIRONMENT")?.value).toBe('"dev"');
  });
});
