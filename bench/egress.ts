/**
 * The egress proxy (cluster-agent/egress/) against its floor, on loopback: connection setup
 * (CONNECT + TLS handshake + one small GET) and a 64 MiB HTTPS download, through the proxy
 * (spliced, and intercepted as for a host a secret is bound to) and straight to the server.
 * `npm run bench -- egress`; BENCH_EGRESS_N setups (default 100), BENCH_EGRESS_DOWNLOADS (default 5).
 */
import { request } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { DEFAULT_FORBIDDEN } from "../cluster-agent/egress/addresses.ts";
import { createEgressProxy } from "../cluster-agent/egress/proxy.ts";
import { newPlaceholder, SecretValue } from "../cluster-agent/egress/secrets.ts";
import { certIssuer, generateCa } from "../cluster-agent/egress/x509.ts";
import { parseEgressPolicy } from "../shared/egress-policy.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";

const SERVER = "127.0.0.2";
const SANDBOX = "127.0.0.10";
const MIB = 1024 * 1024;

interface Target {
  /** undefined: straight to the server. */
  proxyPort?: number;
  host: string;
  ca: string;
}

function open(t: Target, port: number): Promise<TLSSocket> {
  const viaTls = (socket?: Socket) =>
    new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({
        ...(socket ? { socket } : { host: SERVER, port, localAddress: SANDBOX }),
        servername: t.host,
        ca: t.ca,
        ALPNProtocols: ["http/1.1"],
      });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
    });
  if (t.proxyPort === undefined) return viaTls();
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port: t.proxyPort,
      method: "CONNECT",
      path: `${t.host}:${port}`,
      localAddress: SANDBOX,
    });
    req.setTimeout(10_000, () => req.destroy(new Error("CONNECT timed out")));
    req.once("error", reject);
    req.once("connect", (res, socket) =>
      res.statusCode === 200
        ? viaTls(socket).then(resolve, reject)
        : reject(new Error(`CONNECT ${res.statusCode}`)),
    );
    req.end();
  });
}

/** GET /bytes?n= on an open stream; resolves when all `n` body bytes arrived. */
function fetchBytes(s: TLSSocket, host: string, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let head = "";
    let body = -1;
    const onData = (d: Buffer) => {
      if (body < 0) {
        head += d.toString("latin1");
        const at = head.indexOf("\r\n\r\n");
        if (at < 0) return;
        body = head.length - at - 4;
      } else body += d.length;
      if (body >= n) {
        s.off("data", onData);
        resolve();
      }
    };
    s.on("data", onData);
    s.once("error", reject);
    s.write(`GET /bytes?n=${n} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${placeholder}\r\n\r\n`);
  });
}

const placeholder = newPlaceholder();

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function runEgressBench(opts: { n: number; downloads: number }): Promise<BenchRow[]> {
  const serverCa = generateCa("bench server CA");
  const leaf = certIssuer(serverCa)(["pkgs.test", "api.test"]);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const server = createServer(
    { cert: `${leaf.certPem}${serverCa.certPem}`, key: leaf.keyPem },
    (req, res) => {
      let left = Number(new URL(req.url ?? "/", "http://x").searchParams.get("n") ?? "0");
      res.writeHead(200, { "content-length": String(left) });
      const pump = () => {
        while (left > 0) {
          const k = Math.min(left, chunk.length);
          left -= k;
          if (!res.write(k === chunk.length ? chunk : chunk.subarray(0, k)))
            return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    },
  );
  await new Promise<void>((r) => server.listen(0, SERVER, r));
  const port = (server.address() as AddressInfo).port;
  const parsed = parseEgressPolicy({
    network: { allow: [`pkgs.test:${port}`, `api.test:${port}`] },
    secrets: [{ name: "API_KEY", hosts: [`api.test:${port}`] }],
  });
  if (!parsed.ok) throw new Error(parsed.issues.join("; "));
  const clusterCa = generateCa("bench cluster CA");
  const proxy = createEgressProxy({
    lookup: (source) =>
      source === SANDBOX
        ? {
            tenant: "bench",
            sandbox: "bench",
            policy: parsed.policy,
            secrets: new Map([["API_KEY", { placeholder, value: new SecretValue("bench-value") }]]),
          }
        : undefined,
    // The server lives on loopback; only 127.0.0.0/31 (the proxy's own address) stays forbidden.
    resolve: async () => [SERVER],
    forbidden: [...DEFAULT_FORBIDDEN.filter((c) => c !== "127.0.0.0/8"), "127.0.0.0/31"],
    ca: clusterCa,
    upstreamCa: serverCa.certPem,
    maxConnectionsPerSandbox: 1024,
    onEvent: () => {},
  });
  const proxyPort = (await proxy.listen(0, "127.0.0.1")).port;
  const targets = {
    direct: { host: "pkgs.test", ca: serverCa.certPem },
    spliced: { proxyPort, host: "pkgs.test", ca: serverCa.certPem },
    intercepted: { proxyPort, host: "api.test", ca: clusterCa.certPem },
  } satisfies Record<string, Target>;
  try {
    const setup = async (t: Target) => {
      const samples: number[] = [];
      for (let i = 0; i < opts.n + 5; i++) {
        let s: TLSSocket | undefined;
        const ms = await timed(async () => {
          s = await open(t, port);
          await fetchBytes(s, `${t.host}:${port}`, 16);
        });
        s?.destroy();
        if (i >= 5) samples.push(ms);
      }
      return summarize(samples);
    };
    const download = async (t: Target) => {
      const samples: number[] = [];
      for (let i = 0; i < opts.downloads + 1; i++) {
        const s = await open(t, port);
        const ms = await timed(() => fetchBytes(s, `${t.host}:${port}`, 64 * MIB));
        s.destroy();
        if (i >= 1) samples.push(ms);
      }
      return summarize(samples);
    };
    const rows: BenchRow[] = [];
    const setupFloor = await setup(targets.direct);
    for (const [name, t] of [
      ["egress_setup/spliced", targets.spliced],
      ["egress_setup/intercepted", targets.intercepted],
    ] as const) {
      const s = await setup(t);
      rows.push({
        name,
        n: s.n,
        p50Ms: s.p50,
        p99Ms: s.p99,
        floorName: "the same TLS connect + GET straight to the server",
        floorP50Ms: setupFloor.p50,
        floorP99Ms: setupFloor.p99,
        extra: { what: "CONNECT + TLS handshake + GET of 16 bytes through the egress proxy" },
      });
    }
    const downloadFloor = await download(targets.direct);
    for (const [name, t] of [
      ["egress_download_64MiB/spliced", targets.spliced],
      ["egress_download_64MiB/intercepted", targets.intercepted],
    ] as const) {
      const s = await download(t);
      rows.push({
        name,
        n: s.n,
        p50Ms: s.p50,
        p99Ms: s.p99,
        floorName: "the same 64 MiB HTTPS download straight from the server",
        floorP50Ms: downloadFloor.p50,
        floorP99Ms: downloadFloor.p99,
        extra: {
          mibPerS: Math.round((64 / s.p50) * 1000),
          floorMibPerS: Math.round((64 / downloadFloor.p50) * 1000),
        },
      });
    }
    return rows;
  } finally {
    await proxy.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

export const suite: BenchSuite = {
  name: "egress",
  run: () =>
    runEgressBench({
      n: Number(process.env.BENCH_EGRESS_N ?? 100),
      downloads: Number(process.env.BENCH_EGRESS_DOWNLOADS ?? 5),
    }),
};
