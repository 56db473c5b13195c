import { readFileSync } from "node:fs";
import { arch } from "node:os";

/**
 * The RuntimeDefault seccomp profile: moby's default profile (`profiles/seccomp/default.json`,
 * Apache-2.0, taken verbatim from Debian bookworm's golang-github-docker-docker-dev
 * 20.10.24+dfsg1-1+deb12u1 — see seccomp/README.md), turned into an OCI `linux.seccomp` for one
 * container the way moby and containerd do: only this machine's architectures, and the rules whose
 * `includes`/`excludes` match the container's capabilities and architecture. Everything not listed
 * fails with EPERM (the profile's default action) — e.g. unshare, mount, keyctl, bpf, ptrace of
 * others, kernel module and clock calls, and clone with namespace flags.
 */
interface MobyRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: Array<{ index: number; value: number; valueTwo?: number; op: string }> | null;
  includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
  excludes?: { caps?: string[]; arches?: string[]; minKernel?: string };
}
interface MobyProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  archMap: Array<{ architecture: string; subArchitectures: string[] }>;
  syscalls: MobyRule[];
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: Array<{
    names: string[];
    action: string;
    errnoRet?: number;
    args?: Array<{ index: number; value: number; valueTwo: number; op: string }>;
  }>;
}

const PROFILE_PATH = new URL("./seccomp/moby-default.json", import.meta.url);

/** Node's arch → the Go arch names moby's `arches` use, and the libseccomp main architecture. */
const ARCHES: Record<string, { go: string[]; scmp: string }> = {
  x64: { go: ["amd64", "x32", "x86"], scmp: "SCMP_ARCH_X86_64" },
  arm64: { go: ["arm64", "arm"], scmp: "SCMP_ARCH_AARCH64" },
};

let cached: MobyProfile | undefined;
function profile(): MobyProfile {
  cached ??= JSON.parse(readFileSync(PROFILE_PATH, "utf8")) as MobyProfile;
  return cached;
}

function kernelAtLeast(min: string, release: string): boolean {
  const [a = 0, b = 0] = min.split(".").map(Number);
  const [x = 0, y = 0] = release.split(".").map((s) => Number.parseInt(s, 10));
  return x > a || (x === a && y >= b);
}

/**
 * The profile for a container holding `caps` (e.g. `[]` after `drop: [ALL]`) on this machine.
 * Throws on an architecture the profile has no entry for, rather than running unfiltered.
 */
export function runtimeDefaultSeccomp(caps: string[], kernelRelease: string, nodeArch = arch()): OciSeccomp {
  // The same few inputs on every pod start: built once each (~2 ms of CPU apiece), shared read-only.
  const key = JSON.stringify([nodeArch, kernelRelease, [...caps].sort()]);
  let p = built.get(key);
  if (!p) {
    p = buildSeccomp(caps, kernelRelease, nodeArch);
    built.set(key, p);
  }
  return p;
}

const built = new Map<string, OciSeccomp>();

function buildSeccomp(caps: string[], kernelRelease: string, nodeArch: string): OciSeccomp {
  const a = ARCHES[nodeArch];
  if (!a) throw new Error(`no RuntimeDefault seccomp profile for architecture ${nodeArch}`);
  const p = profile();
  const entry = p.archMap.find((m) => m.architecture === a.scmp);
  if (!entry) throw new Error(`moby profile has no ${a.scmp} entry`);
  const has = new Set(caps);
  const matches = (cond: MobyRule["includes"], want: boolean): boolean => {
    if (!cond) return want;
    const checks: boolean[] = [];
    if (cond.caps?.length) checks.push(cond.caps.every((c) => has.has(c)));
    if (cond.arches?.length) checks.push(cond.arches.some((x) => a.go.includes(x)));
    if (cond.minKernel) checks.push(kernelAtLeast(cond.minKernel, kernelRelease));
    if (checks.length === 0) return want;
    // includes: every stated condition must hold; excludes: the rule goes if any stated one holds.
    return want ? checks.every(Boolean) : checks.some(Boolean);
  };
  const syscalls: OciSeccomp["syscalls"] = [];
  for (const r of p.syscalls) {
    if (!matches(r.includes, true)) continue;
    if (matches(r.excludes, false)) continue;
    const out: OciSeccomp["syscalls"][number] = { names: r.names, action: r.action };
    if (r.errnoRet !== undefined) out.errnoRet = r.errnoRet;
    if (r.args?.length) out.args = r.args.map((x) => ({ ...x, valueTwo: x.valueTwo ?? 0 }));
    syscalls.push(out);
  }
  const result: OciSeccomp = {
    defaultAction: p.defaultAction,
    architectures: [entry.architecture, ...entry.subArchitectures],
    syscalls,
  };
  if (p.defaultErrnoRet !== undefined) result.defaultErrnoRet = p.defaultErrnoRet;
  return result;
}
