/**
 * What MCP adds to a command: `tools/call run_in_sandbox {command: "true"}` with the SDK's own
 * client over Streamable HTTP (one connection, reused), interleaved with the same command as a
 * plain `POST /v1/exec` through the edge — the floor, since the MCP server dispatches the tool
 * call through that very route. One local stack (http exec mode, recycle=scrub, pool of 8).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { SCOPES } from "../shared/api.ts";
import { edgeExec } from "./calls.ts";
import { summarize } from "./stats.ts";
import type { BenchRow, BenchSuite } from "./types.ts";
import { progress, withStack } from "./with-stack.ts";

export async function runMcpBench(opts: { n?: number; deadlineMs?: number } = {}): Promise<BenchRow[]> {
  const n = opts.n ?? 100;
  const deadlineMs = opts.deadlineMs ?? 60_000;
  return withStack({ recycle: "scrub", execMode: "http", poolSize: 8, agentsPerRegion: 1 }, async (stack) => {
    const token = await stack.issuer.mint({ tenant: "bench", subject: "bench", scopes: [SCOPES.exec] });
    const client = new Client({ name: "bench", version: "1" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${stack.edgeUrl}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    const viaMcp = async (): Promise<number> => {
      const t0 = performance.now();
      const r = (await client.callTool({
        name: "run_in_sandbox",
        arguments: { command: "true" },
      })) as CallToolResult;
      const ms = performance.now() - t0;
      if (r.isError || (r.structuredContent as { exit_code?: number }).exit_code !== 0) {
        throw new Error(`mcp: \`true\` failed: ${JSON.stringify(r.content)}`);
      }
      return ms;
    };
    const viaRoute = async (): Promise<number> => {
      const e = await edgeExec(stack.edgeUrl, token, "true");
      if (e.result.exitCode !== 0) throw new Error(`exec: \`true\` exited ${e.result.exitCode}`);
      return e.ms;
    };
    try {
      for (let i = 0; i < 10; i++) {
        await viaMcp();
        await viaRoute();
      }
      const mcp: number[] = [];
      const route: number[] = [];
      const until = Date.now() + deadlineMs;
      for (let i = 0; i < n && Date.now() < until; i++) {
        mcp.push(await viaMcp());
        route.push(await viaRoute());
      }
      const m = summarize(mcp);
      const r = summarize(route);
      progress(`mcp: ${m.n} pairs`);
      return [
        {
          name: "mcp_run_in_sandbox",
          n: m.n,
          p50Ms: m.p50,
          p99Ms: m.p99,
          floorName: "POST /v1/exec `true` through the edge (the route the tool call is dispatched to)",
          floorP50Ms: r.p50,
          floorP99Ms: r.p99,
          extra: {
            addedP50Ms: Number((m.p50 - r.p50).toFixed(2)),
            recycle: "scrub",
            execMode: "http",
            agents: 1,
            pods: 8,
          },
        },
      ];
    } finally {
      await client.close();
    }
  });
}

export const suite: BenchSuite = {
  name: "mcp",
  run: () => runMcpBench({ n: Number(process.env.BENCH_MCP_N ?? 100) }),
};
