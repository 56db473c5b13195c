import { readdirSync, readFileSync } from "node:fs";

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
 * CPU time of this process and of all its descendants, in ms: the live ones (/proc/PID/stat utime,
 * stime — a zombie keeps them until it is reaped) and those reaped by a process of the tree
 * (cutime, cstime). When devcluster runs here, that is what its pods cost — runc, the container's
 * processes, the port forwarders and their long-lived host — and nothing of the other work on a
 * shared machine. A process is counted once: live, or in its reaper's cutime after it was reaped.
 * Lost: processes reaped without wait (SIGCHLD ignored: the forwarders' per-connection children).
 */
export function processTreeCpuMs(): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = statFields(`/proc/${name}/stat`);
    if (s) stats.set(Number(name), s);
  }
  const children = new Map<number, number[]>();
  for (const [pid, s] of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid]);
  let ticks = 0;
  const todo = [process.pid];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    ticks += stats.get(pid)?.ticks ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SEC;
}

/** ppid and utime + stime + cutime + cstime of one /proc/PID/stat; undefined if it is gone. */
function statFields(path: string): { ppid: number; ticks: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces): state is field 3, ppid 4, utime 14.
  const f = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  return { ppid: f[1] ?? 0, ticks: (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0) };
}
