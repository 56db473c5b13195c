import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { TEST_EDGE_VARS } from "./test/workers/fixtures/test-keys.ts";

// Two projects: Node-side suites (shared, devcluster, cluster-agent, cross-process e2e, browser)
// and in-runtime suites for the Worker, which run inside workerd via @cloudflare/vitest-plugin.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: ["test/{unit,integration,e2e,fault,browser}/**/*.test.ts"],
          environment: "node",
          testTimeout: 30_000,
          hookTimeout: 60_000,
          // Suites start real servers and sandboxes; the machine has two cores.
          fileParallelism: true,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              cf: false,
              bindings: {
                // wrangler.toml holds no keys: the tests bring theirs (ENVIRONMENT=test lets `test-` kids in).
                ...TEST_EDGE_VARS,
                // The quota tests drain a bucket exactly: they need one small enough to drain quickly and
                // slow enough not to refill mid-test. wrangler.toml's dev defaults (200, 1,200/min) are for people.
                TENANT_QUOTA_BURST: "20",
                TENANT_QUOTA_PER_MINUTE: "12",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
