import { SELF } from "cloudflare:test";
import { expect, it } from "vitest";

it("answers /healthz inside workerd", async () => {
  const res = await SELF.fetch("https://edge.test/healthz");
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ ok: true });
});
