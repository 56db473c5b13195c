import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, describe, expect, it } from "vitest";
import { startTestCluster } from "../support/devcluster.ts";
import { waitFor } from "../support/wait-for.ts";

const REPO = resolve(import.meta.dirname, "../..");
const CLI = join(REPO, "devcluster/cli.ts");
const TSX_LOADER = pathToFileURL(join(REPO, "node_modules/tsx/dist/loader.mjs")).href;

/** PIDs whose command line mentions `needle` (the CLI's state dir, or a pod's marker argument). */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(needle)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe("startDevCluster (API server + kubelet)", () => {
  it("writes a kubeconfig, creates namespaces, registers a Ready node, runs a pod; close() stops it", async () => {
    const cluster = await startTestCluster({ namespaces: ["extra"] });
    try {
      const kc = new KubeConfig();
      kc.loadFromFile(cluster.kubeconfigPath);
      expect(kc.getCurrentCluster()?.server).toBe(cluster.apiUrl);
      // HTTPS verified against the devcluster CA, as kubectl requires before it sends a token.
      expect(cluster.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(kc.getCurrentCluster()?.skipTLSVerify).toBeFalsy();
      expect(Buffer.from(kc.getCurrentCluster()?.caData ?? "", "base64").toString()).toBe(cluster.ca);
      const core = kc.makeApiClient(CoreV1Api);
      const ns = (await core.listNamespace()).items.map((n) => n.metadata?.name);
      expect(ns).toEqual(expect.arrayContaining(["default", "extra"]));
      const node = await waitFor("node", async () => (await core.listNode()).items[0]);
      expect(node.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
      await core.createNamespacedPod({
        namespace: "extra",
        body: {
          metadata: { name: "hello" },
          spec: {
            restartPolicy: "Never",
            containers: [{ name: "c", image: "pi-sandbox-runtime/sandbox:dev", command: ["sleep", "30"] }],
          },
        },
      });
      const running = await waitFor("pod running", async () => {
        const p = await core.readNamespacedPod({ name: "hello", namespace: "extra" });
        return p.status?.phase === "Running" ? p : undefined;
      });
      expect(running.spec?.nodeName).toBe(node.metadata?.name);
      expect(running.status?.podIP).toMatch(/^127\.0\.1\.\d+$/);
      expect((await cluster.request("GET", "/healthz")).status).toBe(200);
    } finally {
      await cluster.close();
    }
    expect(existsSync(cluster.dir)).toBe(false);
    // With the cluster's own CA, so only a closed server (not an untrusted certificate) fails it.
    const dead = await cluster.request("GET", "/healthz").then(
      () => false,
      () => true,
    );
    expect(dead).toBe(true);
  });
});

describe("npm run devcluster (the CLI)", () => {
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function runCli(cwd: string, args: string[]) {
    const child = spawn(process.execPath, ["--import", TSX_LOADER, CLI, ...args], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on("data", () => {});
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const lines = await waitFor("CLI ready", () => (out.includes("Ctrl-C") ? out : undefined), 40_000);
    const field = (k: string) => lines.match(new RegExp(`devcluster: ${k} (\\S+)`))?.[1] ?? "";
    return {
      child,
      exited,
      kubeconfig: field("kubeconfig"),
      state: field("state"),
      apiUrl: field("API server"),
    };
  }

  async function runAPod(kubeconfig: string, state: string) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: "default",
      body: {
        metadata: { name: "cli-pod" },
        spec: {
          // The marker shows up in the container's init and sleep command lines.
          containers: [
            {
              name: "c",
              image: "pi-sandbox-runtime/sandbox:dev",
              command: ["sh", "-c", "sleep 60", podMarker(state)],
            },
          ],
        },
      },
    });
    await waitFor("pod running", async () => {
      const p = await core.readNamespacedPod({ name: "cli-pod", namespace: "default" });
      return p.status?.phase === "Running" ? p : undefined;
    });
    expect(processesMentioning(podMarker(state)).length).toBeGreaterThan(0);
  }

  /** A string unique to this CLI run (its state dir's name), passed as the pod's $0. */
  function podMarker(state: string): string {
    return `cli-pod-${state.split("/").pop() ?? ""}`;
  }

  it("default path .devcluster/kubeconfig; SIGINT leaves no process or file behind", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "devcluster-cli-"));
    dirs.push(cwd);
    const run = await runCli(cwd, []);
    expect(run.kubeconfig).toBe(join(cwd, ".devcluster/kubeconfig"));
    expect(readFileSync(run.kubeconfig, "utf8")).toContain(`server: ${run.apiUrl}`);
    await runAPod(run.kubeconfig, run.state);
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
    expect(existsSync(join(cwd, ".devcluster"))).toBe(false);
    expect(existsSync(run.state)).toBe(false);
    expect(processesMentioning(run.state)).toEqual([]);
    expect(processesMentioning(podMarker(run.state))).toEqual([]);
  });

  it("--kubeconfig PATH; SIGTERM stops it the same way", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "devcluster-cli-"));
    dirs.push(cwd);
    const path = join(cwd, "my", "kc.yaml");
    const run = await runCli(cwd, ["--kubeconfig", path]);
    expect(run.kubeconfig).toBe(path);
    expect(existsSync(path)).toBe(true);
    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(0);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(run.state)).toBe(false);
    expect(processesMentioning(run.state)).toEqual([]);
    expect(processesMentioning(podMarker(run.state))).toEqual([]);
  });
});
