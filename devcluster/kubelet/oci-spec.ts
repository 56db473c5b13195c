import type { OciSeccomp } from "./seccomp.ts";

/** Everything that decides how one container looks; built from the pod spec by the pod worker. */
export interface ContainerSpec {
  hostname: string;
  uid: number;
  gid: number;
  supplementalGids: number[];
  readOnlyRoot: boolean;
  workingDir: string;
  /** Read-only binds from the image map. */
  binds: Array<{ host: string; container: string }>;
  /** emptyDir mounts: a private tmpfs each, sized by sizeLimit when given. */
  tmpfs: Array<{ path: string; sizeBytes?: number; readOnly?: boolean }>;
  argv: string[];
  env: Record<string, string>;
  /** Capabilities after the securityContext's drop/add (none for `drop: [ALL]`). */
  capabilities: string[];
  limits: { memoryBytes?: number; cpuMillis?: number; pids: number };
}

/** Host ids the container's ids 0…size-1 map to: a range of its own, never a real user's. */
export interface IdRange {
  hostId: number;
  size: number;
}

/** The capabilities containerd grants a container before the securityContext's drop/add. */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** containerd's masked and read-only paths (oci.WithMaskedPaths / WithReadonlyPaths defaults). */
export const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];
export const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/**
 * Only the /etc files a process needs to resolve hosts, TLS roots and time; binding all of /etc
 * would expose e.g. /etc/shadow to the sandbox. Users and groups are the container's own
 * (`containerUsers`): the host's passwd database names the host's accounts.
 */
export const ETC_FILES = [
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/resolv.conf",
  "/etc/localtime",
  "/etc/ssl/certs",
  "/etc/ca-certificates",
];

/** The user name of the container's own uid (the real image names its uid 1000 `node`). */
export const CONTAINER_USER = "sandbox";

/**
 * The container's own /etc/passwd and /etc/group: root, the process's uid/gid as `sandbox` (home
 * its working directory), and nobody/nogroup — nothing of the host's accounts.
 */
export function containerUsers(c: Pick<ContainerSpec, "uid" | "gid" | "workingDir">): {
  passwd: string;
  group: string;
} {
  const passwd = ["root:x:0:0:root:/root:/usr/sbin/nologin"];
  if (c.uid !== 0 && c.uid !== 65534) {
    passwd.push(`${CONTAINER_USER}:x:${c.uid}:${c.gid}:${CONTAINER_USER}:${c.workingDir}:/bin/sh`);
  }
  passwd.push("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin");
  const group = ["root:x:0:"];
  if (c.gid !== 0 && c.gid !== 65534) group.push(`${CONTAINER_USER}:x:${c.gid}:`);
  group.push("nogroup:x:65534:");
  return { passwd: `${passwd.join("\n")}\n`, group: `${group.join("\n")}\n` };
}

/** Directories of the image's root that are symlinks into /usr (a merged-/usr system). */
export const USR_SYMLINKS = ["bin", "lib", "lib64", "sbin"];

const CPU_PERIOD_US = 100_000;
const MiB = 1024 * 1024;

type Mount = { destination: string; type: string; source: string; options: string[] };

/**
 * The OCI runtime spec (config.json) for one container, as containerd's CRI plugin builds it:
 * the default mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, read-only /sys and cgroupfs),
 * new pid/net/ipc/uts/mount/user/cgroup namespaces, the masked and read-only paths, the
 * capabilities left after drop/add, no_new_privs, the RuntimeDefault seccomp profile and cgroup
 * limits from `resources.limits`. The image model is devcluster's: the host's /usr and a few /etc
 * files bound read-only into an empty root that holds the container's own passwd and group. The network namespace is new and has only loopback;
 * the kubelet's port forwarder is the pod's only way in.
 */
export function ociSpec(
  c: ContainerSpec,
  ids: IdRange,
  seccomp: OciSeccomp,
  cgroupsPath: string,
): Record<string, unknown> {
  const mounts: Mount[] = [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", `size=${64 * MiB}`],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
    { destination: "/usr", type: "bind", source: "/usr", options: ["rbind", "ro", "nosuid", "nodev"] },
  ];
  for (const f of ETC_FILES) {
    mounts.push({ destination: f, type: "bind", source: f, options: ["rbind", "ro", "nosuid", "nodev"] });
  }
  for (const b of c.binds) {
    mounts.push({
      destination: b.container,
      type: "bind",
      source: b.host,
      options: ["rbind", "ro", "nosuid", "nodev"],
    });
  }
  for (const t of c.tmpfs) {
    const options = ["nosuid", "nodev", "mode=1777"];
    if (t.sizeBytes !== undefined) options.push(`size=${t.sizeBytes}`);
    if (t.readOnly) options.push("ro");
    mounts.push({ destination: t.path, type: "tmpfs", source: "tmpfs", options });
  }

  const resources: Record<string, unknown> = {
    devices: [{ allow: false, access: "rwm" }],
    pids: { limit: c.limits.pids },
  };
  if (c.limits.memoryBytes !== undefined) {
    // No swap beyond the limit, as the kubelet sets it: an allocation past it is OOM-killed.
    resources.memory = { limit: c.limits.memoryBytes, swap: c.limits.memoryBytes };
  }
  if (c.limits.cpuMillis !== undefined) {
    resources.cpu = {
      quota: Math.max(1000, Math.round((c.limits.cpuMillis * CPU_PERIOD_US) / 1000)),
      period: CPU_PERIOD_US,
    };
  }
  const caps = c.capabilities;
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: c.uid, gid: c.gid, additionalGids: c.supplementalGids },
      args: c.argv,
      env: Object.entries(c.env).map(([k, v]) => `${k}=${v}`),
      cwd: c.workingDir,
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: true,
      oomScoreAdj: 1000,
    },
    root: { path: "rootfs", readonly: c.readOnlyRoot },
    hostname: c.hostname,
    mounts,
    linux: {
      uidMappings: [{ containerID: 0, hostID: ids.hostId, size: ids.size }],
      gidMappings: [{ containerID: 0, hostID: ids.hostId, size: ids.size }],
      namespaces: ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"].map((type) => ({ type })),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      seccomp,
      resources,
      cgroupsPath,
    },
  };
}
