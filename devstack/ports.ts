import { type AddressInfo, createServer } from "node:net";

/**
 * A loopback port nothing listens on right now, for a server that must be named before it starts
 * (devcluster's kubelet learns the egress proxy's port before the agent that serves it exists).
 */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
