// Runs inside a pod's network namespace (started by the kubelet with nsenter, as an unprivileged
// user, dying with the kubelet). For each request on its IPC channel it opens a TCP connection to
// the pod's address there and hands the connected socket back to the kubelet, which splices it to
// the host-side listener: the pod's netns has only loopback, so this is its only way in, and
// nothing inside the pod can reach out through it. Plain .mjs, no dependencies.
import { connect } from "node:net";

const CONNECT_TIMEOUT_MS = 5000;

process.on("message", (msg) => {
  const { id, host, port } = msg ?? {};
  if (typeof id !== "number" || typeof host !== "string" || typeof port !== "number") return;
  const sock = connect({ host, port });
  const timer = setTimeout(() => sock.destroy(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
  sock.once("connect", () => {
    clearTimeout(timer);
    process.send?.({ id, ok: true }, sock);
  });
  sock.once("error", (err) => {
    clearTimeout(timer);
    process.send?.({ id, ok: false, message: err.message });
  });
});
process.on("disconnect", () => process.exit(0));
process.send?.({ ready: true });
