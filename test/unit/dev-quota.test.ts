import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

const toml = fileURLToPath(new URL("../../wrangler.toml", import.meta.url));
const vars = (env?: string) =>
  unstable_getMiniflareWorkerOptions(toml, env).workerOptions.bindings as Record<string, string>;

describe("quota defaults in wrangler.toml", () => {
  it("dev never gets in a developer's way: burst ≥ 200, ≥ 1,200 per minute", () => {
    expect(Number(vars().TENANT_QUOTA_BURST)).toBeGreaterThanOrEqual(200);
    expect(Number(vars().TENANT_QUOTA_PER_MINUTE)).toBeGreaterThanOrEqual(1200);
  });

  it("production names its own (the README's Quotas): 120 burst, 600 per minute", () => {
    expect(vars("production").TENANT_QUOTA_BURST).toBe("120");
    expect(vars("production").TENANT_QUOTA_PER_MINUTE).toBe("600");
  });
});
