import { readFileSync } from "node:fs";

/** USER_HZ: 100 on every Linux ABI Node runs on. */
const CLOCK_TICKS_PER_SEC = 100;

/**
 * CPU time the whole machine has spent (user, nice, system, irq, softirq) in ms. Per-process
 * counters miss what a pod start-up costs: runc, the exec server and the port forwarder exit or
 * are reaped by other processes.
 */
export function machineCpuMs(): number {
  const first = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  const ticks = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SEC;
}

/**
 * CPU time of this process and of its descendants it has reaped, in ms (/proc/self/stat utime,
 * stime, cutime, cstime). When devcluster runs here, that is what its pods cost — runc, the
 * container's processes, the port forwarder — once they have exited, and nothing of the other
 * work on a shared machine.
 */
export function processTreeCpuMs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  // Fields after the command name (which may hold spaces): state is field 3, utime field 14.
  const f = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  const ticks = (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SEC;
}
