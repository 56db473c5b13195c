import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_ADMIN_SUBJECT } from "../../devstack/issuer.ts";
import { SCOPES } from "../../shared/api.ts";
import { SDK_QUOTA_BURST, type SdkStack, startSdkStack } from "./sdk-stack.ts";
import { runProcess } from "./stack-helpers.ts";

// The Python client's own unittest suite (sdk/python/tests), run by `python3 -m unittest` against
// the running local stack, from inside `npm test`. python3 is on every machine of ours: if it is
// missing this test fails and says so.

const PY_ROOT = fileURLToPath(new URL("../../sdk/python/", import.meta.url));
let sdk: SdkStack;

beforeAll(async () => {
  sdk = await startSdkStack("sdk-py-");
}, 120_000);
afterAll(() => sdk?.close());

function run(cmd: string, args: string[], env: Record<string, string>, cwd: string, timeoutMs: number) {
  return runProcess(cmd, args, { cwd, env, timeoutMs });
}

describe("Python client (pi_sandbox)", () => {
  it("python3 ≥ 3.9 is installed", () => {
    const v = spawnSync("python3", ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], {
      encoding: "utf8",
    });
    expect(v.error, "python3 is missing: install it (Debian: apt-get install python3)").toBeUndefined();
    const [major, minor] = v.stdout.trim().split(".").map(Number);
    expect(major! * 100 + minor!).toBeGreaterThanOrEqual(309);
  });

  it("its unittest suite passes against the running stack", async () => {
    const { stack } = sdk;
    const quota = await stack.issuer.mint({
      tenant: "tenant-py-quota",
      // The pool (cheapest admin route) needs an admin: the devstack edge's ADMIN_SUBJECTS.
      subject: DEV_ADMIN_SUBJECT,
      scopes: [SCOPES.admin],
    });
    const r = await run(
      "python3",
      ["-m", "unittest", "discover", "-v", "-s", "tests", "-t", "."],
      {
        PYTHONPATH: PY_ROOT,
        PYTHONDONTWRITEBYTECODE: "1",
        PI_SANDBOX_URL: stack.edgeUrl,
        PI_SANDBOX_TOKEN: stack.tokens.tenantA,
        PI_SANDBOX_TOKEN_B: stack.tokens.tenantB,
        PI_SANDBOX_ADMIN_TOKEN: stack.tokens.admin,
        PI_SANDBOX_QUOTA_TOKEN: quota,
        PI_SANDBOX_QUOTA_BURST: String(SDK_QUOTA_BURST),
      },
      PY_ROOT,
      240_000,
    );
    expect(r.code, r.out).toBe(0);
    const ran = Number(/Ran (\d+) tests?/.exec(r.out)?.[1] ?? 0);
    expect(ran, r.out).toBeGreaterThanOrEqual(11);
    expect(r.out, "no test may be skipped").not.toMatch(/skipped/);
  }, 300_000);
});
