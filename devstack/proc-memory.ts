import { readdirSync, readFileSync, writeFileSync } from "node:fs";

/**
 * Peak memory of the stack's processes from /proc (Linux): reset a process's peak RSS, run the
 * load, read the peak. For the memory figures of uploads (issue 24) in tests and bench/.
 */

/** Pids of `parent`'s children whose command is `name` (e.g. Miniflare's workerd). */
export function childPids(parent: number, name: string): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return ppid === parent && comm === name;
      } catch {
        return false;
      }
    })
    .map(Number);
}

function statusKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN);
}

/** Resets the process's peak RSS (`clear_refs` 5) and returns its RSS now, in KiB. */
export function resetPeakRss(pid: number): number {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
  return statusKiB(pid, "VmRSS");
}

/** The process's peak RSS since the last reset, in KiB. */
export function peakRssKiB(pid: number): number {
  return statusKiB(pid, "VmHWM");
}
