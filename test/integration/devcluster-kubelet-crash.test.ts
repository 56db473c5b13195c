import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "../../devcluster/apiserver/index.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { type Scheduler, startScheduler } from "../../devcluster/scheduler/scheduler.ts";
import { testKubeletClient } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";

// A kubelet that is SIGKILLed (no chance to clean up) must take its containers with it: runc and
// the container's init die with their parent. The kubelet runs in its own process for this.
const ADMIN = "crash-admin";
const NODE = "crash-node-token";
let dir: string;
let imageDir: string;
let api: ApiServer;
let child: ChildProcess | undefined;
let scheduler: Scheduler;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "devcluster-kcrash-"));
  imageDir = await writeHealthServerImage();
  api = await startApiServer({
    tokens: { [ADMIN]: "admin", [NODE]: "system:node:crash-node" },
    kubeletClient: await testKubeletClient(),
  });
  await core().createNamespace({ body: { metadata: { name: "default" } } });
  scheduler = await startScheduler({ kubeConfig: makeKubeConfig({ server: api.url, token: ADMIN }) });
});

afterAll(async () => {
  if (child?.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await scheduler?.close();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(imageDir, { recursive: true, force: true });
});

function core(): CoreV1Api {
  return makeKubeConfig({ server: api.url, token: ADMIN }).makeApiClient(CoreV1Api);
}

async function hostProcessesWith(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    // Zombies have an empty cmdline: they hold no resources.
    if (cmd.includes(marker)) out.push(Number(name));
  }
  return out;
}

function startKubeletProcess(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", "test/support/kubelet-process.ts"], {
      cwd: process.cwd(),
      env: {
        ...process.env,
        KUBELET_API: api.url,
        KUBELET_TOKEN: NODE,
        KUBELET_NODE: "crash-node",
        KUBELET_STATE: join(dir, "kubelet"),
        KUBELET_IMAGES: JSON.stringify({
          [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] },
        }),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const timer = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error("kubelet process did not start in 20 s"));
    }, 20_000);
    let out = "";
    let err = "";
    p.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    p.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready ")) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`kubelet process exited (${code}): ${err}`));
    });
  });
}

describe("a SIGKILLed kubelet", () => {
  it("leaves no sandbox running", async () => {
    child = await startKubeletProcess();
    const marker = `crash-marker-${randomUUID()}`;
    await core().createNamespacedPod({
      namespace: "default",
      body: healthPod("crash-pod", { command: ["node", "/app/server.mjs", marker] }),
    });
    const deadline = Date.now() + 20_000;
    while ((await hostProcessesWith(marker)).length === 0) {
      if (Date.now() > deadline) throw new Error("sandbox never started");
      await new Promise((r) => setTimeout(r, 150));
    }
    const exited = new Promise((r) => child?.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    const gone = Date.now() + 5000;
    let left = await hostProcessesWith(marker);
    while (left.length > 0 && Date.now() < gone) {
      await new Promise((r) => setTimeout(r, 100));
      left = await hostProcessesWith(marker);
    }
    expect(left).toEqual([]);
  }, 60_000);
});
