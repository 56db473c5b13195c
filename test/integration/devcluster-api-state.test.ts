import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer } from "../support/devcluster.ts";

const LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "devcluster-state-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("stateFile: an API server restarted on the same port keeps its objects", () => {
  it("objects and resourceVersion continuity survive a restart; an old watch position gets 410", async () => {
    const stateFile = join(dir, "store.json");
    const a = await startTestApiServer({ stateFile });
    const port = Number(new URL(a.url).port);
    const created = await a.raw("POST", LEASES, {
      metadata: { name: "kept" },
      spec: { holderIdentity: "h" },
    });
    const node = await a.raw("POST", "/api/v1/nodes", { metadata: { name: "n" } });
    expect(node.status).toBe(201);
    await a.close();
    // Let the client's pooled keep-alive sockets to the old server notice they are closed.
    await new Promise((r) => setTimeout(r, 200));

    const b = await startTestApiServer({ stateFile, port });
    try {
      expect(b.url).toBe(a.url);
      const got = await b.raw("GET", `${LEASES}/kept`);
      expect(got.status).toBe(200);
      expect(got.json.metadata.resourceVersion).toBe(created.json.metadata.resourceVersion);
      expect(got.json.metadata.uid).toBe(created.json.metadata.uid);
      const u = await b.raw("PUT", `${LEASES}/kept`, { ...got.json, spec: { holderIdentity: "new" } });
      expect(Number(u.json.metadata.resourceVersion)).toBeGreaterThan(
        Number(node.json.metadata.resourceVersion),
      );
      // The watch history is not persisted: resuming from before the restart is 410 Expired.
      const w = await b.raw(
        "GET",
        `${LEASES}?watch=true&resourceVersion=${created.json.metadata.resourceVersion}`,
      );
      expect(w.status).toBe(200);
      expect(JSON.parse(w.text.trim()).object.code).toBe(410);
      // Single-object watch (GET …/NAME?watch=true).
      const one = await b.raw("GET", `/api/v1/nodes/n?watch=true&timeoutSeconds=1`);
      expect(JSON.parse(one.text.trim())).toMatchObject({
        type: "ADDED",
        object: { kind: "Node", metadata: { name: "n" } },
      });
    } finally {
      await b.close();
    }
  });
});
