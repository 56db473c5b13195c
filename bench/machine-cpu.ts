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

/** utime + stime + cutime + cstime of one /proc/<pid>/stat, and its parent; undefined once gone. */
function statOf(pid: string): { ppid: string; ms: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces): ppid is field 4, utime field 14.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11] ?? 0) + Number(f[12] ?? 0) + Number(f[13] ?? 0) + Number(f[14] ?? 0);
  return { ppid: f[1] ?? "", ms: (ticks * 1000) / CLOCK_TICKS_PER_SEC };
}

/**
 * CPU time of this process and every process below it, alive or reaped (each one's own time plus
 * what it reaped), in ms: a whole local stack (workerd, the agents, devcluster and its pods) when
 * the stack was started from here, without the rest of a shared machine's work. A descendant that
 * exits moves its time into its parent's reaped counters, so the sum only grows.
 */
export function stackTreeCpuMs(): number {
  const byParent = new Map<string, string[]>();
  const ms = new Map<string, number>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const s = statOf(pid);
    if (!s) continue;
    ms.set(pid, s.ms);
    const kids = byParent.get(s.ppid);
    if (kids) kids.push(pid);
    else byParent.set(s.ppid, [pid]);
  }
  let total = 0;
  const todo = [String(process.pid)];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    total += ms.get(pid) ?? 0;
    todo.push(...(byParent.get(pid) ?? []));
  }
  return total;
}
