import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_FORBIDDEN } from "../../cluster-agent/egress/addresses.ts";
import type { Resolver } from "../../cluster-agent/egress/types.ts";
import { type CertificateAuthority, certIssuer, generateCa } from "../../cluster-agent/egress/x509.ts";

/**
 * A fake internet on loopback for the egress proxy's tests: one HTTP and one HTTPS server on
 * 127.0.0.2 serving every test name, with their own test CA, and a resolver that maps the test
 * names. Never a real outside address.
 *
 * The proxy forbids 127.0.0.0/8 in production, but these servers live there, so tests give the
 * proxy `TEST_FORBIDDEN`: the production list with loopback narrowed to 127.0.0.0/31 (incl.
 * 127.0.0.1, where the proxy itself listens) and 127.0.0.99, which still shows a loopback name being
 * refused, while 127.0.0.2 (the servers) is reachable.
 */
export const SERVER_ADDRESS = "127.0.0.2";
export const TEST_FORBIDDEN: readonly string[] = [
  ...DEFAULT_FORBIDDEN.filter((c) => c !== "127.0.0.0/8"),
  "127.0.0.0/31",
  "127.0.0.99/32",
];

export const TEST_NAMES: Record<string, string[]> = {
  "pkgs.test": [SERVER_ADDRESS],
  "api.test": [SERVER_ADDRESS],
  "other.test": [SERVER_ADDRESS],
  // Resolve to addresses no policy can open.
  "rebind.test": ["169.254.169.254"],
  "loop.test": ["127.0.0.1"],
  "ninety-nine.test": ["127.0.0.99"],
  // A forbidden answer first: the proxy must skip it and connect to the allowed one it checked.
  "mixed.test": ["127.0.0.99", SERVER_ADDRESS],
  // Served by the same server, whose certificate does not name it.
  "wrongcert.test": [SERVER_ADDRESS],
};

export const testResolver: Resolver = async (host) => {
  const a = TEST_NAMES[host];
  if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return a;
};

export interface SeenRequest {
  scheme: "http" | "https";
  host: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The client's port: requests on one connection share it. */
  clientPort: number;
}

export interface FakeInternet {
  httpPort: number;
  httpsPort: number;
  ca: CertificateAuthority;
  /** The test CA's certificate as a file (for curl --cacert). */
  caFile: string;
  /** Every request the servers got, in order: "the test server's log". */
  seen: SeenRequest[];
  close(): Promise<void>;
}

function handler(scheme: "http" | "https", seen: SeenRequest[]) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    seen.push({
      scheme,
      host: String(req.headers.host),
      path: url.pathname,
      headers: { ...req.headers },
      clientPort: req.socket.remotePort ?? 0,
    });
    if (url.pathname === "/echo") {
      let n = 0;
      req.on("data", (d: Buffer) => (n += d.length));
      req.on("end", () => {
        const text = `received ${n} bytes\n`;
        res.writeHead(200, { "content-type": "text/plain", "content-length": String(text.length) });
        res.end(text);
      });
      return;
    }
    if (url.pathname === "/bytes") {
      // /bytes?n=N: N bytes, streamed in 64 KiB chunks.
      let left = Number(url.searchParams.get("n") ?? "0");
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(left) });
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n)))
            return void res.once("drain", pump);
        }
        res.end();
      };
      return pump();
    }
    const body = `hello from ${req.headers.host} over ${scheme}\n`;
    res.writeHead(200, { "content-type": "text/plain", "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  };
}

const listen = (s: Server) =>
  new Promise<number>((resolve, reject) => {
    s.once("error", reject);
    s.listen(0, SERVER_ADDRESS, () => resolve((s.address() as AddressInfo).port));
  });

export async function startFakeInternet(): Promise<FakeInternet> {
  const ca = generateCa("fake internet test CA");
  const leaf = certIssuer(ca)(Object.keys(TEST_NAMES).filter((n) => n !== "wrongcert.test"));
  const seen: SeenRequest[] = [];
  const http = createHttpServer(handler("http", seen));
  const https = createHttpsServer(
    { cert: `${leaf.certPem}${ca.certPem}`, key: leaf.keyPem },
    handler("https", seen),
  );
  const [httpPort, httpsPort] = await Promise.all([listen(http), listen(https)]);
  const dir = mkdtempSync(join(tmpdir(), "fake-internet-"));
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.certPem);
  return {
    httpPort,
    httpsPort,
    ca,
    caFile,
    seen,
    close: async () => {
      for (const s of [http, https]) s.closeAllConnections();
      await Promise.all([http, https].map((s) => new Promise((r) => s.close(r))));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
