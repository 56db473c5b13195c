import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statfsSync, statSync } from "node:fs";
import { join } from "node:path";

const CGROUP2_MAGIC = 0x63677270;
const STALE_AFTER_MS = 120_000;

/** Which cgroup hierarchy runc will use here, and the directory container cgroups go under. */
export interface CgroupSetup {
  mode: "v1" | "v2";
  /** Set when limits cannot be enforced: the one warning the kubelet prints. */
  warning?: string;
}

/** This process's own cgroup in `controller`'s hierarchy (v1) or the unified one (v2, `""`). */
function ownCgroup(controller: string): string | undefined {
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const [, ctrls = "", path] = line.split(":");
    if (path === undefined) continue;
    if (controller === "" ? line.startsWith("0::") : ctrls.split(",").includes(controller)) return path;
  }
  return undefined;
}

function writableChild(dir: string): string | undefined {
  const probe = join(dir, `devcluster-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return undefined;
  } catch (err) {
    return `${dir}: ${(err as Error).message}`;
  }
}

/**
 * Container cgroups are created (by runc, from a relative cgroupsPath) only below the kubelet's
 * own cgroup in each hierarchy. This checks that this is possible for the controllers limits
 * need (memory, pids, cpu), so a machine where it is not gets one clear warning up front.
 */
export function checkCgroups(): CgroupSetup {
  const unified = statfsSync("/sys/fs/cgroup").type === CGROUP2_MAGIC;
  if (!unified) {
    const problems: string[] = [];
    for (const ctrl of ["memory", "pids", "cpu"]) {
      const own = ownCgroup(ctrl);
      const dir = join("/sys/fs/cgroup", ctrl, own ?? "/");
      const p = own === undefined || !existsSync(dir) ? `${ctrl}: not mounted` : writableChild(dir);
      if (p) problems.push(p);
    }
    return problems.length === 0
      ? { mode: "v1" }
      : { mode: "v1", warning: `cgroup v1 controllers not writable (${problems.join("; ")})` };
  }
  const own = ownCgroup("") ?? "/";
  const dir = join("/sys/fs/cgroup", own);
  const problem = writableChild(dir);
  if (problem) return { mode: "v2", warning: `cgroup v2 not writable (${problem})` };
  const available = readFileSync(join(dir, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  const missing = ["memory", "pids", "cpu"].filter((c) => !available.includes(c));
  if (missing.length > 0) {
    return { mode: "v2", warning: `cgroup v2 controllers ${missing.join(", ")} not delegated to ${dir}` };
  }
  return { mode: "v2" };
}

/**
 * Removes container cgroups a killed kubelet left behind (runc removes them when it exits
 * normally). rmdir only succeeds on a cgroup with no processes, so live containers of other
 * kubelets on this host are never touched.
 */
export function sweepStaleCgroups(mode: "v1" | "v2"): number {
  const roots =
    mode === "v2"
      ? [join("/sys/fs/cgroup", ownCgroup("") ?? "/", "devcluster")]
      : readdirSync("/sys/fs/cgroup").map((ctrl) =>
          join(
            "/sys/fs/cgroup",
            ctrl,
            ownCgroup(ctrl === "systemd" ? "name=systemd" : ctrl) ?? "/",
            "devcluster",
          ),
        );
  let removed = 0;
  for (const root of new Set(roots)) {
    let children: string[];
    try {
      children = readdirSync(root, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      continue;
    }
    for (const name of children) {
      try {
        // A cgroup runc has just created may not hold its process yet: only old ones go.
        if (Date.now() - statSync(join(root, name)).mtimeMs < STALE_AFTER_MS) continue;
        rmdirSync(join(root, name));
        removed++;
      } catch {
        // busy: a running container
      }
    }
  }
  return removed;
}
