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
  const stats = procStats();
  const children = new Map<number, number[]>();
  for (const [pid, st] of stats) {
    const siblings = children.get(st.ppid);
    if (siblings) siblings.push(pid);
    else children.set(st.ppid, [pid]);
  }
  let ms = 0;
  const todo = [process.pid];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    const st = stats.get(pid);
    ms += st ? st.ownMs + st.reapedMs : 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return ms;
}

/** One process as /proc/PID/stat shows it: its parent, name, own CPU and what it reaped (ms). */
export interface ProcStat {
  ppid: number;
  comm: string;
  ownMs: number;
  reapedMs: number;
}

/** Every process on the machine, by pid. */
export function procStats(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = statFields(`/proc/${name}/stat`);
    if (st) stats.set(Number(name), st);
  }
  return stats;
}

/** One /proc/PID/stat; undefined if the process is gone. */
function statFields(path: string): ProcStat | undefined {
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
  const ms = (i: number) => ((f[i] ?? 0) * 1000) / CLOCK_TICKS_PER_SEC;
  return {
    ppid: f[1] ?? 0,
    comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
    ownMs: ms(11) + ms(12),
    reapedMs: ms(13) + ms(14),
  };
}

/** CPU ms of this process and every one below it (own time and what each reaped), by a label for what it is. */
export function cpuByProcess(
  agentPids: ReadonlySet<number>,
  kubeletPid: number | undefined,
): Map<string, number> {
  const procs = procStats();
  // Which top-level child of the bench each process descends from.
  const under = (pid: number): number | undefined => {
    for (let cur = pid, hops = 0; hops < 64; hops++) {
      const p = procs.get(cur);
      if (!p) return undefined;
      if (p.ppid === process.pid) return cur;
      cur = p.ppid;
    }
    return undefined;
  };
  const out = new Map<string, number>();
  const add = (k: string, ms: number) => out.set(k, (out.get(k) ?? 0) + ms);
  const self = process.cpuUsage();
  // devcluster (API server, scheduler) runs in the bench process, with the load generator.
  add("devcluster+bench", (self.user + self.system) / 1000);
  const me = procs.get(process.pid);
  if (me) add("reaped-by-devcluster", me.reapedMs);
  for (const [pid, p] of procs) {
    if (pid === process.pid) continue;
    if (pid === kubeletPid) {
      // The kubelet's own process; runc, pods' processes and forwarders that exited, reaped by it.
      add("kubelet", p.ownMs);
      add("reaped-by-kubelet", p.reapedMs);
      continue;
    }
    const top = under(pid);
    if (top === undefined) continue;
    const label = agentPids.has(top)
      ? "agents"
      : p.comm === "workerd" || procs.get(top)?.comm === "workerd"
        ? "workerd"
        : // the exec servers in the pods are `node`; runc, perl forwarders, shells
          `other/${p.comm}`;
    add(label, p.ownMs + p.reapedMs);
  }
  return out;
}
