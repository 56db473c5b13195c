// Makes sure the system packages the tests and the local stack need are present.
// As root with apt-get it installs what is missing; otherwise it prints the one command to run.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/** binary that must exist → Debian package that provides it */
export const SYSTEM_DEPS = [
  {
    bin: "/usr/bin/bwrap",
    pkg: "bubblewrap",
    why: "the exec server's own tests run it in a bubblewrap sandbox",
  },
  { bin: "/usr/sbin/runc", pkg: "runc", why: "devcluster runs each pod as a runc container" },
  { bin: "/usr/bin/openssl", pkg: "openssl", why: "devcluster makes the kubelet's TLS certificates" },
  { bin: "/usr/bin/chromium", pkg: "chromium", why: "the dashboard's browser tests drive headless Chromium" },
  { bin: "/usr/bin/nsenter", pkg: "util-linux", why: "pods/exec enters the pod's namespaces" },
  { bin: "/usr/bin/setpriv", pkg: "util-linux", why: "sandboxes and local agents die with their parent" },
];

export function ensureSystemDeps({ quiet = false } = {}) {
  const missing = SYSTEM_DEPS.filter((d) => !existsSync(d.bin));
  if (missing.length === 0) return true;
  const pkgs = [...new Set(missing.map((d) => d.pkg))];
  const cmd = `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(" ")}`;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const hasApt = spawnSync("sh", ["-c", "command -v apt-get"]).status === 0;
  if (!isRoot || !hasApt) {
    console.error(`missing system packages: ${pkgs.join(", ")}`);
    for (const d of missing) console.error(`  ${d.pkg}: ${d.why}`);
    console.error(`install them with:\n  sudo sh -c '${cmd}'`);
    return false;
  }
  if (!quiet) console.log(`installing system packages: ${pkgs.join(", ")}`);
  execFileSync(
    "sh",
    ["-c", `(${cmd}) >/tmp/pi-sandbox-apt.log 2>&1 || (tail -20 /tmp/pi-sandbox-apt.log; exit 1)`],
    {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    },
  );
  return SYSTEM_DEPS.every((d) => existsSync(d.bin));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exit(ensureSystemDeps() ? 0 : 1);
}
