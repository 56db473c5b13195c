// Shell commands a tenant runs inside a sandbox to leave state behind for the next tenant, to look
// for what an earlier tenant left, and to attack the exec server. One copy, used through the bare
// server (bubblewrap), through the agent (recycle) and in devcluster pods (isolation).

/**
 * Tenant A: a file in /dev/shm, one SysV shared-memory segment, message queue and semaphore set,
 * one POSIX message queue, and a process in a session of its own (it survives the exec). Waits
 * until the escapee is `sleep` before printing "left".
 */
export const LEAVE_BEHIND = [
  "echo tenant-a-secret > /dev/shm/tenant-a",
  "ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null && ipcmk -S 1 >/dev/null",
  `python3 -c 'import ctypes,sys; rt = ctypes.CDLL("librt.so.1"); sys.exit(0 if rt.mq_open(b"/tenant-a", 0o102, 0o600, None) >= 0 else 1)'`,
  "setsid sleep 1000 </dev/null >/dev/null 2>&1 &",
  'while [ "$(cat /proc/$!/comm 2>/dev/null)" != sleep ]; do :; done',
  "echo left",
].join("\n");

/**
 * Counts, one per line: /dev/shm entries, SysV segments, message queues, semaphore sets, POSIX
 * queues, `sleep` processes — then whatever /dev/shm/tenant-a holds.
 */
export const LOOK_FOR_RESIDUE = [
  "ls -A /dev/shm | wc -l",
  "for k in shm msg sem; do tail -n +2 /proc/sysvipc/$k | wc -l; done",
  "ls -A /dev/mqueue | wc -l",
  "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$'",
  "cat /dev/shm/tenant-a 2>/dev/null; true",
].join("\n");

export const RESIDUE_NONE = "0\n0\n0\n0\n0\n0\n";
export const RESIDUE_ALL = "1\n1\n1\n1\n1\n1\ntenant-a-secret\n";

/**
 * A command against the exec server (found by its argv): read its environment (the pod token),
 * open its memory, ptrace-attach it, and SIGUSR1 it (Node's inspector) then try 127.0.0.1:9229
 * for up to 2 s. Prints `server=<pid>` and one `<attack>:<outcome>` line each.
 */
export const ATTACK_SERVER = `python3 - <<'PY'
import ctypes, os, signal, socket, time
pid = next(int(p) for p in os.listdir("/proc") if p.isdigit()
           and open(f"/proc/{p}/cmdline", "rb").read().split(b"\\0")[1:2] == [b"/opt/sandbox-server/server.mjs"])
print(f"server={pid}")
def opened(path):
    try:
        open(path, "rb").close()
        return "readable"
    except PermissionError:
        return "denied"
print("environ:" + opened(f"/proc/{pid}/environ"))
print("mem:" + opened(f"/proc/{pid}/mem"))
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
    os.waitpid(pid, 0x40000000)  # __WALL
    libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
    print("ptrace:attached")
else:
    print("ptrace:" + os.strerror(ctypes.get_errno()))
def port_open():
    try:
        socket.create_connection(("127.0.0.1", 9229), timeout=0.2).close()
        return True
    except OSError:
        return False
if port_open():
    print("inspector:port 9229 already taken, cannot tell")
    raise SystemExit(0)
os.kill(pid, signal.SIGUSR1)
state = "closed"
deadline = time.time() + 2
while time.time() < deadline and state == "closed":
    if port_open():
        state = "open"
    else:
        time.sleep(0.05)
print("inspector:" + state)
PY`;

export const ATTACKS_FAIL =
  /^server=\d+\nenviron:denied\nmem:denied\nptrace:Operation not permitted\ninspector:closed\n$/;
