/** Everything that decides how one container's sandbox looks; built from the pod spec. */
export interface SandboxSpec {
  hostname: string;
  uid: number;
  gid: number;
  readOnlyRoot: boolean;
  workingDir: string;
  /** Read-only binds from the image map. */
  binds: Array<{ host: string; container: string }>;
  /** emptyDir mounts: a private tmpfs each, sized by sizeLimit when given. */
  tmpfs: Array<{ path: string; sizeBytes?: number; readOnly?: boolean }>;
  argv: string[];
}

const DEV_SHM_BYTES = 64 * 1024 * 1024;

/**
 * Only the /etc files a process needs to resolve users, hosts, TLS roots and time; binding
 * all of /etc would expose e.g. /etc/shadow to the sandbox.
 */
export const ETC_FILES = [
  "/etc/passwd",
  "/etc/group",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/resolv.conf",
  "/etc/localtime",
  "/etc/ssl/certs",
  "/etc/ca-certificates",
];

/**
 * bwrap arguments: an empty tmpfs root with /usr and a few /etc files read-only, fresh /dev and
 * /proc, the image binds, tmpfs emptyDirs, then the root remounted read-only. New user, PID, IPC,
 * UTS and cgroup namespaces; all capabilities dropped; the sandbox dies with the kubelet.
 * The network namespace is shared on purpose: pods listen on their 127.0.1.x address.
 * `--json-status-fd 3` reports the init's host PID (for exec) and the exit code.
 */
export function bwrapArgs(spec: SandboxSpec): string[] {
  const a: string[] = ["--tmpfs", "/", "--ro-bind", "/usr", "/usr"];
  for (const dir of ["bin", "lib", "lib64", "sbin"]) a.push("--symlink", `usr/${dir}`, `/${dir}`);
  for (const f of ETC_FILES) a.push("--ro-bind-try", f, f);
  // /dev is read-only except /dev/shm, a size-limited tmpfs as a container runtime provides (64 MiB).
  a.push("--dev", "/dev", "--perms", "1777", "--size", String(DEV_SHM_BYTES), "--tmpfs", "/dev/shm");
  a.push("--remount-ro", "/dev", "--proc", "/proc");
  for (const b of spec.binds) a.push("--ro-bind", b.host, b.container);
  for (const t of spec.tmpfs) {
    a.push("--perms", "1777");
    if (t.sizeBytes !== undefined) a.push("--size", String(t.sizeBytes));
    a.push("--tmpfs", t.path);
    if (t.readOnly) a.push("--remount-ro", t.path);
  }
  // A working directory that no mount provides must still exist (read-only, as in an image).
  if (spec.workingDir !== "/") a.push("--dir", spec.workingDir);
  if (spec.readOnlyRoot) a.push("--remount-ro", "/");
  a.push(
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--hostname",
    spec.hostname,
    "--die-with-parent",
    "--new-session",
    "--uid",
    String(spec.uid),
    "--gid",
    String(spec.gid),
    "--cap-drop",
    "ALL",
    "--chdir",
    spec.workingDir,
    "--json-status-fd",
    "3",
    "--",
    ...spec.argv,
  );
  return a;
}
