// The one list of system packages the project needs, and the check every entry point runs first.
// Missing packages are installed only when this process is root with apt-get; otherwise it names
// each missing package, why it is needed, and the one command that installs them. Nothing here
// needs root when everything is already installed.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/**
 * binary that must exist → Debian package that provides it, and which entry points need it:
 * "stack" = devcluster and everything built on it (npm start, npm run devcluster, npm run bench,
 * the tests); "test" = only tests (npm test); "browser" = only the dashboard's browser tests
 * (npm test), never npm start.
 */
export const SYSTEM_DEPS = [
  {
    bin: "/usr/bin/bwrap",
    pkg: "bubblewrap",
    why: "the exec server's own tests run it in a bubblewrap sandbox",
    for: ["test"],
  },
  { bin: "/usr/sbin/runc", pkg: "runc", why: "devcluster runs each pod as a runc container", for: ["stack"] },
  {
    bin: "/usr/bin/openssl",
    pkg: "openssl",
    why: "devcluster makes the kubelet's TLS certificates",
    for: ["stack"],
  },
  {
    bin: "/usr/bin/nsenter",
    pkg: "util-linux",
    why: "pods/exec enters the pod's namespaces",
    for: ["stack"],
  },
  {
    bin: "/usr/bin/setpriv",
    pkg: "util-linux",
    why: "sandboxes and local agents die with their parent",
    for: ["stack"],
  },
  {
    bin: "/usr/bin/chromium",
    pkg: "chromium",
    why: "the dashboard's browser tests drive headless Chromium",
    for: ["browser"],
  },
];

/** What `purposes` need and is not installed. */
export function missingSystemDeps(purposes = ["stack"]) {
  return SYSTEM_DEPS.filter((d) => d.for.some((p) => purposes.includes(p)) && !existsSync(d.bin));
}

/** The one command that installs `pkgs` (the caller adds sudo when not root). */
export function installCommand(pkgs) {
  return `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(" ")}`;
}

/**
 * Returns true when everything `purposes` need is present (installing it first when root with apt-get).
 * `entry` names the command in the message ("npm start").
 */
export function ensureSystemDeps({ purposes = ["stack"], entry = "this command", quiet = false } = {}) {
  const missing = missingSystemDeps(purposes);
  if (missing.length === 0) return true;
  const pkgs = [...new Set(missing.map((d) => d.pkg))];
  const cmd = installCommand(pkgs);
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const hasApt = spawnSync("sh", ["-c", "command -v apt-get"]).status === 0;
  if (!isRoot || !hasApt) {
    console.error(`${entry} needs system packages that are not installed: ${pkgs.join(", ")}`);
    for (const d of missing) console.error(`  ${d.pkg} (${d.bin}): ${d.why}`);
    console.error(
      hasApt
        ? `installing packages needs root; run once:\n  sudo sh -c '${cmd}'`
        : `this machine has no apt-get; install the packages above with its package manager`,
    );
    return false;
  }
  if (!quiet) console.log(`installing system packages for ${entry}: ${pkgs.join(", ")}`);
  execFileSync(
    "sh",
    ["-c", `(${cmd}) >/tmp/pi-sandbox-apt.log 2>&1 || (tail -20 /tmp/pi-sandbox-apt.log; exit 1)`],
    {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    },
  );
  return missingSystemDeps(purposes).length === 0;
}

// `node scripts/system-deps.mjs [stack] [browser]`
if (import.meta.url === `file://${process.argv[1]}`) {
  const purposes = process.argv.length > 2 ? process.argv.slice(2) : ["stack", "test", "browser"];
  process.exit(ensureSystemDeps({ purposes, entry: "pi-sandbox-runtime" }) ? 0 : 1);
}
