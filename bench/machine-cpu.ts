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
