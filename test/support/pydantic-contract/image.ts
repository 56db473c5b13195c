import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { copyFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { V1Pod } from "@kubernetes/client-node";
import type { ImageSpec } from "../../../devcluster/kubelet/index.ts";

const run = promisify(execFile);
const HERE = fileURLToPath(new URL(".", import.meta.url));
const COMPONENT_TEMPLATE = fileURLToPath(
  new URL("../../../k8s/components/pydantic-http/sandbox-pod-template.json", import.meta.url),
);

export const CONTRACT_REPO = "pi-sandbox-runtime/pydantic-contract";
export const CONTRACT_IMAGE = `${CONTRACT_REPO}:dev`;
/** Where the image's files are in the container. */
const MOUNT = "/opt/contract";
/** The test server's own output cap (its OUTPUT_CAP_BYTES). */
export const CONTRACT_OUTPUT_CAP = 64 * 1024;

let built: Promise<string> | undefined;

/**
 * The "user's image" for devcluster: server.py (FastAPI + uvicorn, written to pydantic-ai-backends'
 * http contract) and its packages, installed for the system python3 that devcluster pods see
 * (the host's /usr) from the Python index this machine is configured with. Built once per test
 * process into a temp dir, removed at exit.
 */
export function contractImage(): Promise<Record<string, ImageSpec>> {
  built ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "pydantic-contract-image-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    const venv = join(dir, "tools");
    await run("/usr/bin/python3", ["-m", "venv", venv], { timeout: 120_000 });
    // --retries 0: an index this machine cannot reach is skipped at once, not retried.
    await run(
      join(venv, "bin", "python"),
      [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--retries",
        "0",
        "--target",
        join(dir, "image", "site"),
        "fastapi",
        "uvicorn",
      ],
      { timeout: 300_000 },
    );
    await copyFile(join(HERE, "server.py"), join(dir, "image", "server.py"));
    return join(dir, "image");
  })();
  return built.then((host) => ({ [CONTRACT_REPO]: { binds: [{ host, container: MOUNT }] } }));
}

/**
 * k8s/components/pydantic-http's pod template with this image's entrypoint (a real image has it
 * as its CMD), written to a temp file for SANDBOX_POD_TEMPLATE.
 */
export async function contractPodTemplate(): Promise<string> {
  const pod = JSON.parse(await readFile(COMPONENT_TEMPLATE, "utf8")) as V1Pod;
  const c = pod.spec?.containers[0];
  if (!c) throw new Error("the component's template has no container");
  c.args = ["/usr/bin/python3", `${MOUNT}/server.py`];
  c.env = [
    ...(c.env ?? []),
    { name: "PYTHONPATH", value: `${MOUNT}/site` },
    { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
    { name: "OUTPUT_CAP_BYTES", value: String(CONTRACT_OUTPUT_CAP) },
  ];
  const dir = await mkdtemp(join(tmpdir(), "pydantic-contract-template-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "pod.json");
  await writeFile(path, JSON.stringify(pod));
  return path;
}
