import { request } from "node:http";
import type { Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";

// A client of the egress proxy as a sandbox is one: CONNECT from a chosen source address (the
// proxy's only notion of who is calling), TLS to the destination over the tunnel, one request.

/** A CONNECT from `source`; the proxy's status, headers and (for a refusal) body, and the socket. */
export function connectThrough(port: number, source: string, authority: string) {
  return new Promise<{ status: number; refused?: string; body: string; socket: Socket }>(
    (resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port,
        method: "CONNECT",
        path: authority,
        localAddress: source,
      });
      req.setTimeout(10_000, () => req.destroy(new Error("CONNECT timed out")));
      req.on("error", reject);
      req.on("connect", (res, socket, head) => {
        const status = res.statusCode ?? 0;
        const refused = res.headers["x-egress-refused"] as string | undefined;
        if (status === 200) return resolve({ status, body: "", socket });
        let body = head.toString();
        socket.on("data", (d) => (body += d.toString()));
        socket.on("close", () => resolve({ status, body, socket, ...(refused ? { refused } : {}) }));
      });
      req.end();
    },
  );
}

export function tlsOver(socket: Socket, servername: string, caPem: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({ socket, servername, ca: caPem });
    t.once("secureConnect", () => resolve(t));
    t.once("error", reject);
  });
}

/** One HTTP/1.1 request on an open (TLS) stream; resolves to the response head+body text once complete. */
export function get(stream: TLSSocket, host: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (d: Buffer) => {
      text += d.toString();
      const m = /content-length: (\d+)/i.exec(text);
      const bodyAt = text.indexOf("\r\n\r\n");
      if (m && bodyAt >= 0 && Buffer.byteLength(text.slice(bodyAt + 4)) >= Number(m[1])) {
        stream.off("data", onData);
        resolve(text);
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
    stream.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

export const closed = (s: Socket) =>
  new Promise<void>((r) => (s.destroyed ? r() : s.once("close", () => r())));
