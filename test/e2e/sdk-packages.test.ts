import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SdkStack, startSdkStack } from "./sdk-stack.ts";
import { runProcess, tempDir } from "./stack-helpers.ts";

// Both clients as a user gets them: the TypeScript package packed (`npm pack`) and installed into an
// empty project outside the repository, the Python package built (wheel + sdist) and pip-installed
// into a fresh virtualenv; each then used from there against the running local stack. Nothing is
// imported from the repository's source.

const TS_ROOT = fileURLToPath(new URL("../../sdk/typescript/", import.meta.url));
const PY_ROOT = fileURLToPath(new URL("../../sdk/python/", import.meta.url));
const TSC = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url));
const tsVersion = JSON.parse(readFileSync(join(TS_ROOT, "package.json"), "utf8")).version as string;
const pyVersion = /^version = "([^"]+)"/m.exec(readFileSync(join(PY_ROOT, "pyproject.toml"), "utf8"))?.[1];

let sdk: SdkStack;
const work = tempDir("sdk-packages-");
beforeAll(async () => {
  sdk = await startSdkStack("sdk-pkg-");
}, 120_000);
afterAll(async () => {
  await sdk?.close();
  work.remove();
});
const userEnv = () => ({
  PATH: process.env.PATH ?? "",
  HOME: process.env.HOME ?? "",
  PI_SANDBOX_URL: sdk.stack.edgeUrl,
  PI_SANDBOX_TOKEN: sdk.stack.tokens.tenantA,
});

describe("@pi-sandbox/client, packed and installed into an empty project", () => {
  const project = join(work.dir, "ts-project");
  let tarball = "";

  beforeAll(async () => {
    const pack = await runProcess("npm", ["pack", "--silent", "--pack-destination", work.dir], {
      cwd: TS_ROOT,
      timeoutMs: 120_000,
    });
    expect(pack.code, pack.stderr).toBe(0);
    tarball = join(work.dir, pack.stdout.trim().split("\n").at(-1)!);
    spawnSync("mkdir", ["-p", project]);
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "user", private: true, type: "module" }),
    );
    // --offline: the package has no dependencies, so installing it needs no registry.
    const install = await runProcess("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], {
      cwd: project,
      timeoutMs: 120_000,
    });
    expect(install.code, install.stderr).toBe(0);
  }, 240_000);

  it("the tarball holds compiled JS, declarations, the bin, README and CHANGELOG; no source, no import leaves the package", () => {
    expect(tarball).toMatch(new RegExp(`pi-sandbox-client-${tsVersion.replaceAll(".", "\\.")}\\.tgz$`));
    const files = spawnSync("tar", ["tzf", tarball], { encoding: "utf8" }).stdout.trim().split("\n");
    expect(files).toEqual(
      expect.arrayContaining([
        "package/bin/pi-sandbox.mjs",
        "package/dist/index.js",
        "package/dist/index.d.ts",
        "package/dist/agents.js",
        "package/dist/agents.d.ts",
        "package/README.md",
        "package/CHANGELOG.md",
      ]),
    );
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    const dist = join(project, "node_modules/@pi-sandbox/client/dist");
    const outside: string[] = [];
    for (const f of readdirSync(dist)) {
      const text = readFileSync(join(dist, f), "utf8");
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
        const spec = m[1]!;
        // Declarations keep the source's `./x.ts` (type-only, resolved to x.d.ts): either way a file
        // of dist/ itself.
        const local = /^\.\/([\w-]+)\.(js|ts)$/.exec(spec);
        const ok = local
          ? existsSync(join(dist, local[2] === "js" ? `${local[1]}.js` : `${local[1]}.d.ts`))
          : spec.startsWith("node:") || spec.startsWith("@openai/agents");
        if (!ok) outside.push(`${f}: ${spec}`);
      }
    }
    expect(outside).toEqual([]);
  });

  it("a program of the project runs a command and a binary file round trip against the stack", async () => {
    writeFileSync(
      join(project, "use.mjs"),
      `import { SandboxClient, SandboxApiError } from "@pi-sandbox/client";
const client = new SandboxClient({ baseUrl: process.env.PI_SANDBOX_URL, token: process.env.PI_SANDBOX_TOKEN });
const r = await client.exec("echo installed-$((40+2))");
await using sb = await client.sandboxes.create();
const bytes = new Uint8Array(256).map((_, i) => i);
await sb.files.write("bin/all.bytes", bytes);
const back = await sb.files.read("bin/all.bytes");
const sum = await sb.exec("od -An -tu1 bin/all.bytes | wc -w");
let missing = "";
try { await sb.files.read("nope.txt"); } catch (e) { if (e instanceof SandboxApiError) missing = e.code; }
console.log(JSON.stringify({ stdout: r.stdout, same: Buffer.compare(Buffer.from(back), Buffer.from(bytes)) === 0, words: sum.stdout.trim(), missing }));
`,
    );
    const r = await runProcess(process.execPath, ["use.mjs"], {
      cwd: project,
      env: userEnv(),
      cleanEnv: true,
      timeoutMs: 90_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      stdout: "installed-42\n",
      same: true,
      words: "256",
      missing: "file_not_found",
    });
  }, 120_000);

  it("its declarations typecheck a strict TypeScript program on their own (no @types, no repository paths)", async () => {
    writeFileSync(
      join(project, "use.ts"),
      `import { SandboxClient, type ExecResult, type ErrorCode } from "@pi-sandbox/client";
const client = new SandboxClient({ baseUrl: "http://x", token: "t" });
export const r: Promise<ExecResult> = client.exec("true", { timeoutSeconds: 5 });
export const code: ErrorCode = "sandbox_not_found";
`,
    );
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2022",
          lib: ["ES2023", "ESNext.Disposable", "DOM", "DOM.Iterable"],
          types: [],
          skipLibCheck: false,
        },
        files: ["use.ts"],
      }),
    );
    const r = await runProcess(process.execPath, [TSC, "-p", "tsconfig.json"], {
      cwd: project,
      timeoutMs: 120_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // And a wrong use is caught by the installed types, so the check above is not vacuous.
    writeFileSync(
      join(project, "use.ts"),
      `import type { ErrorCode } from "@pi-sandbox/client";\nexport const c: ErrorCode = "no_such_code";\n`,
    );
    const bad = await runProcess(process.execPath, [TSC, "-p", "tsconfig.json"], {
      cwd: project,
      timeoutMs: 120_000,
    });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toContain("no_such_code");
  }, 240_000);

  it("the installed bin (node_modules/.bin/pi-sandbox) runs exec, cp both ways and sandbox rm", async () => {
    const bin = join(project, "node_modules/.bin/pi-sandbox");
    const cli = (args: string[]) =>
      runProcess(bin, args, { cwd: project, env: userEnv(), cleanEnv: true, timeoutMs: 60_000 });
    const ex = await cli(["exec", "--", "sh", "-c", "echo cli-out; exit 5"]);
    expect(ex).toMatchObject({ code: 5, stdout: "cli-out\n" });
    const created = await cli(["sandbox", "create"]);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    writeFileSync(join(project, "up.txt"), "from the installed cli\n");
    expect((await cli(["cp", "up.txt", `${id}:in/up.txt`])).code).toBe(0);
    expect((await cli(["cp", `${id}:in/up.txt`, "down.txt"])).code).toBe(0);
    expect(readFileSync(join(project, "down.txt"), "utf8")).toBe("from the installed cli\n");
    expect((await cli(["sandbox", "rm", id])).code).toBe(0);
    expect((await cli(["sandbox", "get", id])).code).toBe(66);
    // Without URL and token: the one clear error naming the variables.
    const none = await runProcess(bin, ["exec", "--", "true"], {
      cwd: project,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" },
      cleanEnv: true,
      timeoutMs: 30_000,
    });
    expect(none.code).toBe(78);
    expect(none.stderr).toContain("PI_SANDBOX_URL");
  }, 180_000);
});

describe("pi_sandbox, built (wheel + sdist) and pip-installed into a fresh virtualenv", () => {
  const venv = join(work.dir, "venv");
  const py = join(venv, "bin", "python");
  const dist = join(work.dir, "py-dist");

  beforeAll(async () => {
    // A copy of the package, so no build/ or egg-info lands in the repository.
    const src = join(work.dir, "py-src");
    spawnSync("cp", ["-r", PY_ROOT, src]);
    spawnSync("rm", ["-rf", join(src, "tests"), join(src, "pi_sandbox", "__pycache__")]);
    const steps: Array<[string, string[]]> = [
      ["python3", ["-m", "venv", venv]],
      // `build` comes from the Python index this machine is configured with (pip.conf).
      [py, ["-m", "pip", "install", "--quiet", "build"]],
      [py, ["-m", "build", "--sdist", "--wheel", "--outdir", dist, src]],
    ];
    for (const [cmd, args] of steps) {
      const r = await runProcess(cmd, args, { cwd: work.dir, timeoutMs: 240_000 });
      expect(r.code, `${cmd} ${args.join(" ")}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    const wheel = readdirSync(dist).find((f) => f.endsWith(".whl"));
    const r = await runProcess(py, ["-m", "pip", "install", "--quiet", "--no-index", join(dist, wheel!)], {
      cwd: work.dir,
      timeoutMs: 120_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
  }, 600_000);

  it("builds a wheel (with py.typed, without tests) and an sdist of the version in pyproject.toml", () => {
    expect(readdirSync(dist).sort()).toEqual([
      `pi_sandbox-${pyVersion}-py3-none-any.whl`,
      `pi_sandbox-${pyVersion}.tar.gz`,
    ]);
    const names = spawnSync(
      py,
      [
        "-c",
        "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        join(dist, `pi_sandbox-${pyVersion}-py3-none-any.whl`),
      ],
      { encoding: "utf8" },
    ).stdout;
    expect(names).toContain("pi_sandbox/py.typed");
    expect(names).toContain("pi_sandbox/client.py");
    expect(names).not.toContain("tests/");
  });

  it("used from outside the repository: a command, a binary file round trip, the session shape by name", async () => {
    const program = `
import hashlib, json, os, pi_sandbox
from pi_sandbox import SandboxClient, SandboxApiError
client = SandboxClient(os.environ["PI_SANDBOX_URL"], os.environ["PI_SANDBOX_TOKEN"])
out = {"where": pi_sandbox.__file__, "version": pi_sandbox.__version__}
out["stdout"] = client.exec("echo py-installed-$((40+2))").stdout
sb = client.get_or_create_sandbox("py-installed")
try:
    data = bytes(range(256)) * 16
    sb.write("bin/all.bytes", data)
    out["same"] = sb.read("bin/all.bytes") == data
    r = sb.execute("sha256sum bin/all.bytes; exit 3")
    out["sha"] = r.output.split()[0] == hashlib.sha256(data).hexdigest()
    out["exit"] = r.exit_code
    out["again"] = client.get_or_create_sandbox("py-installed").id == sb.id
    try:
        sb.read("nope.txt")
    except SandboxApiError as e:
        out["missing"] = e.code
finally:
    sb.close()
print(json.dumps(out))
`;
    writeFileSync(join(work.dir, "use.py"), program);
    const r = await runProcess(py, ["use.py"], {
      cwd: work.dir,
      env: { ...userEnv(), PYTHONDONTWRITEBYTECODE: "1" },
      cleanEnv: true,
      timeoutMs: 90_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.where.startsWith(join(venv, "lib"))).toBe(true);
    expect(out).toMatchObject({
      version: pyVersion,
      stdout: "py-installed-42\n",
      same: true,
      sha: true,
      exit: 3,
      again: true,
      missing: "file_not_found",
    });
  }, 120_000);
});
