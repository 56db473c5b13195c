import { expect, it } from "vitest";

it("runs on node", () => {
  expect(process.versions.node.split(".")[0]).toBe("20");
});
