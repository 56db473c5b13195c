import { expect, it } from "vitest";

it("runs on Node 24 (the `node` dev dependency), whatever the system Node is", () => {
  expect(process.versions.node.split(".")[0]).toBe("24");
});
