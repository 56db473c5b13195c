// Runs inside a pod's network namespace (started by the kubelet with nsenter, as an unprivileged
// user, dying with the kubelet). For each request on its IPC channel it opens a TCP connection to
// the pod's address there and hands the connected socket back to the kubelet, which splices it to
// the host-side listener: the pod's netns has only loopback, so this is its only way in. The one
// way out, when the kubelet asks for it ({egressPort}): a listener on 127.0.0.1:egressPort whose
// every connection is handed to the kubelet, which opens it to the egress proxy and nothing else.
// Plain .mjs, no dependencies.
import { connect, createServer } from "node:net";

const CONNECT_TIMEOUT_MS = 5000;

process.on("message", (msg) => {
  if (typeof msg?.egressPort === "number") return listenOutward(msg.egressPort);
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
function listenOutward(port) {
  const srv = createServer({ pauseOnConnect: true }, (sock) => process.send?.({ outbound: true }, sock));
  srv.once("error", (err) => process.send?.({ outboundListening: false, message: err.message }));
  srv.listen({ host: "127.0.0.1", port, exclusive: true }, () => process.send?.({ outboundListening: true }));
}
process.on("disconnect", () => process.exit(0));
process.send?.({ ready: true });
