/**
 * The api executor and files (pods/exec through client-node) answer a failed connection in our
 * words; client-node's own message (the API server's address, its answer) is only the error's
 * cause, which the pipeline logs with the request id (requests/leased-sandbox.ts).
 */

import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { ApiExecutor } from "../../cluster-agent/exec/api-executor.ts";
import { ApiFiles } from "../../cluster-agent/exec/api-files.ts";
import type { AppError } from "../../shared/errors.ts";

/** A kubeconfig whose API server is a port nothing listens on. */
async function deadApiServer(): Promise<{ kubeConfig: KubeConfig; port: number }> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "c", server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return { kubeConfig, port };
}

const target = { namespace: "ns", pod: "p0", podIP: "127.0.1.2", fence: 1 };

function expectOurWords(e: AppError, port: number) {
  expect(e.code).toBe("sandbox_failed");
  expect(e.message).toBe("pods/exec to p0 could not connect");
  expect(String((e.cause as Error | undefined)?.message)).toContain(String(port));
}

describe("pods/exec that cannot connect", () => {
  it("the api executor answers sandbox_failed in our words; client-node's message is the cause", async () => {
    const { kubeConfig, port } = await deadApiServer();
    const r = await new ApiExecutor({ kubeConfig, connectTimeoutMs: 5_000 }).exec(target, {
      command: "true",
      timeoutMs: 1_000,
      signal: new AbortController().signal,
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expectOurWords(r.error, port);
  });

  it("the api files answer the same way", async () => {
    const { kubeConfig, port } = await deadApiServer();
    const r = await new ApiFiles({ kubeConfig, timeoutMs: 5_000 }).remove(target, "a.txt", {
      signal: new AbortController().signal,
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expectOurWords(r.error, port);
  });
});
