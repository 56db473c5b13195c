// The Dockerfiles cannot be built here (no Docker engine): what can be checked offline is that
// they build what the repository builds, copy files that exist, run as the users the manifests
// expect, and that the agent bundle they ship needs nothing but production dependencies.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildAgentBundle } from "../../cluster-agent/build.ts";
import { K8S_DIR } from "../../k8s/render.ts";

const REPO = join(K8S_DIR, "..");
const OUT = join("dist", `k8s-images-test-${process.pid}`);
afterAll(() => rmSync(join(REPO, OUT), { recursive: true, force: true }));

interface Stage {
  from: string;
  lines: string[];
}
function stages(file: string): Stage[] {
  const text = readFileSync(join(K8S_DIR, "images", file), "utf8").replace(/\\\n/g, " ");
  const out: Stage[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (/^FROM /i.test(line)) out.push({ from: line.slice(5), lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}
const instr = (s: Stage, name: string) =>
  s.lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1));
const template = JSON.parse(readFileSync(join(K8S_DIR, "base", "sandbox-pod-template.json"), "utf8"));

describe.each(["agent.Dockerfile", "sandbox.Dockerfile"])("%s", (file) => {
  const s = stages(file);
  it("is multi-stage on a pinned node:24-slim and copies only files that exist", () => {
    expect(s.length).toBeGreaterThanOrEqual(2);
    for (const st of s) expect(st.from).toMatch(/^node:24-slim( AS \w+)?$/);
    for (const st of s) {
      for (const c of instr(st, "COPY").filter((c) => !c.startsWith("--from"))) {
        const sources = c.split(/\s+/).slice(0, -1);
        for (const src of sources) expect(existsSync(join(REPO, src)), `${file}: COPY ${src}`).toBe(true);
      }
    }
  });
  it("runs as a numeric non-root user in its final stage", () => {
    const users = instr(s.at(-1) as Stage, "USER");
    expect(users).toHaveLength(1);
    const uid = Number(users[0]?.split(":")[0]);
    expect(uid).toBeGreaterThan(0);
  });
});

describe("agent image", () => {
  const s = stages("agent.Dockerfile");
  it("bundles with cluster-agent/build.ts (the build devstack uses) and starts the bundle", () => {
    expect(s[0]?.lines.join("\n")).toContain("cluster-agent/build.ts dist/agent/main.mjs");
    expect(instr(s.at(-1) as Stage, "ENTRYPOINT")[0]).toBe(
      '["node", "--enable-source-maps", "/app/main.mjs"]',
    );
    expect(readFileSync(join(REPO, "devstack", "agents.ts"), "utf8")).toContain("buildAgentBundle(");
  });
  it("installs only production dependencies, and the bundle needs nothing else", async () => {
    expect(s.map((st) => st.lines.join("\n")).join("\n")).toContain("npm ci --omit=dev");
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const bundle = await buildAgentBundle(join(OUT, "main.mjs"));
    expect(bundle.externals.length).toBeGreaterThan(0);
    for (const ext of bundle.externals) {
      const name = ext.startsWith("@") ? ext.split("/").slice(0, 2).join("/") : (ext.split("/")[0] ?? ext);
      expect(Object.keys(pkg.dependencies), ext).toContain(name);
    }
    // The bundle loads all its imports and reaches the agent's own configuration check.
    const run = spawnSync(process.execPath, [bundle.outfile], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? "/usr/bin" },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("RELAY_PUBLIC_KEYS is required");
  }, 60_000);
  it("runs as the uid the Deployment's read-only root expects and exposes AGENT_PORT and METRICS_PORT", () => {
    expect(instr(s.at(-1) as Stage, "EXPOSE")).toEqual(["8081 9464"]);
    expect(instr(s.at(-1) as Stage, "USER")).toEqual(["10001:10001"]);
  });
});

describe("sandbox image", () => {
  const s = stages("sandbox.Dockerfile");
  const final = s.at(-1) as Stage;
  it("ships the bundled exec server where the pod template starts it", () => {
    const c = template.spec.containers[0];
    expect([...(c.command ?? []), ...(c.args ?? [])]).toEqual([
      "/opt/sandbox-server/node",
      "/opt/sandbox-server/server.mjs",
    ]);
    expect(instr(final, "COPY").join("\n")).toContain("/opt/sandbox-server/server.mjs");
    expect(s[0]?.lines.join("\n")).toContain("cluster-agent/sandbox-server/build.ts");
  });
  it("runs the server from an execute-only, root-owned node (non-dumpable) and ships ipcrm", () => {
    const run = instr(final, "RUN").join("\n");
    expect(run).toContain("install -o root -g root -m 0111 /usr/local/bin/node /opt/sandbox-server/node");
    expect(instr(final, "CMD")).toEqual(['["/opt/sandbox-server/node", "/opt/sandbox-server/server.mjs"]']);
    // util-linux (ipcrm) is Essential in the Debian base: /reset needs it for SysV IPC.
    expect(final.from).toMatch(/^node:\d+-slim$/);
  });
  it("runs tini as pid 1: the template sets args, not command, so the ENTRYPOINT stays", () => {
    expect(instr(final, "ENTRYPOINT")).toEqual(['["/usr/bin/tini", "--"]']);
    expect(template.spec.containers[0].command).toBeUndefined();
  });
  it("has sh, coreutils (timeout, env: api exec mode), python3, node, git; uid 1000; /workspace", () => {
    const install = instr(final, "RUN").join(" ");
    for (const p of ["tini", "coreutils", "python3", "git"]) expect(install).toContain(` ${p}`);
    expect(instr(final, "USER")).toEqual([
      `${template.spec.securityContext.runAsUser}:${template.spec.securityContext.runAsGroup}`,
    ]);
    expect(instr(final, "WORKDIR")).toEqual(["/workspace"]);
    expect(instr(final, "EXPOSE")).toEqual([String(template.spec.containers[0].ports[0].containerPort)]);
  });
});
