import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiServer, startApiServer } from "../../devcluster/apiserver/index.ts";
import { makeKubeConfig } from "../../devcluster/kubeconfig.ts";
import { type KubeletProcessData, startKubeletProcess } from "../../devcluster/kubelet-process.ts";
import { type Scheduler, startScheduler } from "../../devcluster/scheduler/scheduler.ts";
import { testKubeletClient, testKubeletTls } from "../support/devcluster.ts";
import { healthPod, TEST_IMAGE_REPO, writeHealthServerImage } from "../support/kubelet-fixtures.ts";

// A kubelet in its own process (devcluster's kubelet-process.ts, as devstack runs it) that is
// SIGKILLed, or whose devcluster is, must take its containers with it: runc and the container's
// init die with their parent (`setpriv --pdeathsig`), and the kubelet with devcluster.
const ADMIN = "crash-admin";
const NODE = "crash-node-token";
let dir: string;
let imageDir: string;
let api: ApiServer;
let child: ChildProcess | undefined;
let scheduler: Scheduler;
let tls: KubeletProcessData["tls"];
const stops: Array<() => Promise<void>> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "devcluster-kcrash-"));
  imageDir = await writeHealthServerImage();
  tls = await testKubeletTls();
  api = await startApiServer({
    tokens: { [ADMIN]: "admin", [NODE]: "system:node:crash-node" },
    kubeletClient: await testKubeletClient(),
  });
  await core().createNamespace({ body: { metadata: { name: "default" } } });
  scheduler = await startScheduler({ kubeConfig: makeKubeConfig({ server: api.url, token: ADMIN }) });
});

afterAll(async () => {
  if (child?.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const stop of stops) await stop().catch(() => {});
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

/** The kubelet as devstack runs it: devcluster's kubelet-process.ts, in a process of its own. */
function kubeletData(): KubeletProcessData {
  return {
    kube: { server: api.url, token: NODE },
    nodeName: "crash-node",
    stateDir: join(dir, "kubelet"),
    images: { [TEST_IMAGE_REPO]: { binds: [{ host: imageDir, container: "/app" }] } },
    tls,
  };
}

async function sandboxRunning(name: string): Promise<string> {
  const marker = `crash-marker-${randomUUID()}`;
  await core().createNamespacedPod({
    namespace: "default",
    body: healthPod(name, { command: ["node", "/app/server.mjs", marker] }),
  });
  const deadline = Date.now() + 20_000;
  while ((await hostProcessesWith(marker)).length === 0) {
    if (Date.now() > deadline) throw new Error("sandbox never started");
    await new Promise((r) => setTimeout(r, 150));
  }
  return marker;
}

async function goneWithin(ms: number, check: () => Promise<number[]>): Promise<number[]> {
  const until = Date.now() + ms;
  let left = await check();
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    left = await check();
  }
  return left;
}

const alive = async (pid: number) => {
  try {
    process.kill(pid, 0);
    return (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.startsWith("Z") ? [] : [pid];
  } catch {
    return [];
  }
};

describe("a kubelet in its own process", () => {
  it("SIGKILLed, leaves no sandbox running", async () => {
    const kubelet = await startKubeletProcess(kubeletData());
    stops.push(() => kubelet.close());
    expect(kubelet.pid).toBeGreaterThan(0);
    expect(kubelet.pid).not.toBe(process.pid);
    const marker = await sandboxRunning("crash-pod");
    process.kill(kubelet.pid as number, "SIGKILL");
    expect(await goneWithin(5000, () => alive(kubelet.pid as number))).toEqual([]);
    expect(await goneWithin(5000, () => hostProcessesWith(marker))).toEqual([]);
    await core().deleteNamespacedPod({ namespace: "default", name: "crash-pod", gracePeriodSeconds: 0 });
  }, 60_000);

  it("dies with the process that started it (SIGKILL), and takes its sandboxes along", async () => {
    // A devcluster stand-in in a process of its own, which this test can SIGKILL.
    const script = `
      import { startKubeletProcess } from "./devcluster/kubelet-process.ts";
      const k = await startKubeletProcess(JSON.parse(process.env.KUBELET_DATA));
      process.stdout.write("kubelet " + k.pid + "\\n");
      setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: process.cwd(),
      env: { ...process.env, KUBELET_DATA: JSON.stringify(kubeletData()) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    child = parent;
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`no kubelet within 30 s: ${out}`)), 30_000);
      parent.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /kubelet (\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      parent.once("exit", (code) => reject(new Error(`parent exited (${code}): ${out}`)));
    });
    const marker = await sandboxRunning("orphan-pod");
    parent.kill("SIGKILL");
    expect(await goneWithin(5000, () => alive(pid))).toEqual([]);
    expect(await goneWithin(5000, () => hostProcessesWith(marker))).toEqual([]);
  }, 60_000);

  it("close() stops the process and the pods it runs", async () => {
    const kubelet = await startKubeletProcess(kubeletData());
    const marker = await sandboxRunning("closed-pod");
    await kubelet.close();
    expect(await alive(kubelet.pid as number)).toEqual([]);
    expect(await goneWithin(5000, () => hostProcessesWith(marker))).toEqual([]);
  }, 60_000);
});
