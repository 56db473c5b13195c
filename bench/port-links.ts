/**
 * A page through a port link (issue 27 item 3). One local stack (http exec mode, one agent, pool of
 * 2), one sandbox running python's http.server on port 8000 with a 16 KiB page and a 4 MiB file.
 *
 * - port_link_page: GET of the page through a public link (`<id>.localhost`: edge → tunnel → agent
 *   → the pod's exec server → 127.0.0.1:8000). Floor: the same request from inside the pod (python's
 *   urllib on 127.0.0.1:8000, timed in the pod), and the agent's own proxy call on the pod (no edge,
 *   no tunnel, no Lease renewal) beside it.
 * - port_link_4mib: GET of the 4 MiB file through the link (streamed under the tunnel's credit).
 *   Floor: the same from inside the pod.
 */
import { HttpPorts } from "../cluster-agent/exec/ports.ts";
import { linkFetch } from "../devstack/fixtures/link-fetch.ts";
import type { ExecResult, PortLink } from "../shared/api.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { sandboxTarget, withSmallStack } from "./with-stack.ts";

/** Times `n` GETs of `path` on 127.0.0.1:8000 from inside the pod; prints one ms figure per line. */
const IN_POD_CLIENT = (path: string, n: number) =>
  `python3 -c 'import time,urllib.request
for i in range(${n + 2}):
    t=time.perf_counter(); d=urllib.request.urlopen("http://127.0.0.1:8000${path}").read(); print((time.perf_counter()-t)*1000)'`;

export async function runPortLinkBench(opts: { n?: number } = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 50;
  return withSmallStack("port-links", async (stack, { call }) => {
    const sb = await call<{ id: string; pod: string }>(
      "POST",
      "/v1/sandboxes",
      '{"idleTimeoutSeconds":3600}',
    );
    try {
      const exec = (command: string) =>
        call<ExecResult>(
          "POST",
          `/v1/sandboxes/${sb.id}/exec`,
          JSON.stringify({ command, timeoutSeconds: 120 }),
        );
      await exec(
        "head -c 16384 /dev/zero | tr '\\0' a > page.html && head -c 4194304 /dev/urandom > big.bin",
      );
      await call(
        "POST",
        `/v1/sandboxes/${sb.id}/processes`,
        '{"argv":["python3","-m","http.server","8000","--bind","127.0.0.1"]}',
      );
      const link = await call<PortLink>("POST", `/v1/sandboxes/${sb.id}/ports/8000/links`, '{"public":true}');
      const u = new URL(link.url);
      const at = (path: string) => `${u.protocol}//${u.host}${path}`;
      const linkHeaders = { "x-pi-link": u.searchParams.get("pi_link") ?? "" };
      for (let i = 0; i < 100; i++) {
        const res = await linkFetch(at("/page.html"), { headers: linkHeaders });
        await res.arrayBuffer();
        if (res.status === 200) break;
        if (res.status !== 502) throw new Error(`link: ${res.status}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const timeLink = async (path: string, rounds: number, bytes: number): Promise<number[]> => {
        const out: number[] = [];
        for (let i = 0; i < rounds + 2; i++) {
          const t0 = performance.now();
          const res = await linkFetch(at(path), { headers: linkHeaders });
          const got = (await res.arrayBuffer()).byteLength;
          if (res.status !== 200 || got !== bytes)
            throw new Error(`link ${path}: ${res.status}, ${got} bytes`);
          if (i >= 2) out.push(performance.now() - t0);
        }
        return out;
      };
      const inPod = async (path: string, rounds: number): Promise<number[]> => {
        const r = await exec(IN_POD_CLIENT(path, rounds));
        if (r.exitCode !== 0) throw new Error(`in-pod client: ${r.stderr.slice(0, 200)}`);
        return r.stdout.trim().split("\n").slice(2).map(Number);
      };
      const { target, poolToken } = await sandboxTarget(stack, sb.pod);
      const ports = new HttpPorts({ poolToken });
      const agentOwn: number[] = [];
      for (let i = 0; i < n + 2; i++) {
        const t0 = performance.now();
        const r = await ports.proxy(
          target,
          { port: 8000, method: "GET", path: "/page.html", headers: [] },
          { signal: AbortSignal.timeout(30_000) },
        );
        if (!r.ok || !r.value.body) throw new Error(`agent proxy: ${r.ok ? "no body" : r.error.code}`);
        await new Response(r.value.body).arrayBuffer();
        if (i >= 2) agentOwn.push(performance.now() - t0);
      }
      const page = summarize(await timeLink("/page.html", n, 16_384));
      const pageFloor = summarize(await inPod("/page.html", n));
      const agent = summarize(agentOwn);
      const bigRounds = Math.min(10, n);
      const big = summarize(await timeLink("/big.bin", bigRounds, 4_194_304));
      const bigFloor = summarize(await inPod("/big.bin", bigRounds));
      const rows: BenchRow[] = [
        {
          name: "port_link_page",
          n: page.n,
          p50Ms: page.p50,
          p99Ms: page.p99,
          floorName: "the same GET from inside the pod (python urllib → 127.0.0.1:8000)",
          floorP50Ms: pageFloor.p50,
          floorP99Ms: pageFloor.p99,
          extra: { page: "16 KiB", agentOwnProxyP50Ms: agent.p50, agentOwnProxyP99Ms: agent.p99 },
        },
        {
          name: "port_link_4mib",
          n: big.n,
          p50Ms: big.p50,
          p99Ms: big.p99,
          floorName: "the same GET from inside the pod",
          floorP50Ms: bigFloor.p50,
          floorP99Ms: bigFloor.p99,
          extra: { mibPerSecondP50: Math.round((4 / (big.p50 / 1000)) * 10) / 10 },
        },
      ];
      return rows;
    } finally {
      await call("DELETE", `/v1/sandboxes/${sb.id}`).catch(() => undefined);
    }
  });
}

export const suite: BenchSuite = {
  name: "port-links",
  run: () => runPortLinkBench({ n: Number(process.env.BENCH_PORT_LINK_N ?? 50) }),
};
