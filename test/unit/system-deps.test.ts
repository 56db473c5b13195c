import { describe, expect, it } from "vitest";
import { installCommand, SYSTEM_DEPS } from "../../scripts/system-deps.mjs";

describe("system packages (one list for every entry point)", () => {
  it("npm start needs the sandbox runtime but never chromium (only the browser tests do)", () => {
    const stack = SYSTEM_DEPS.filter((d) => d.for.includes("stack")).map((d) => d.pkg);
    expect(stack).toContain("runc");
    expect(SYSTEM_DEPS.find((d) => d.pkg === "bubblewrap")?.for).toEqual(["test"]);
    expect(stack).not.toContain("chromium");
    expect(SYSTEM_DEPS.find((d) => d.pkg === "chromium")?.for).toEqual(["browser"]);
  });

  it("names the one command that installs what is missing", () => {
    expect(installCommand(["bubblewrap", "util-linux"])).toBe(
      "apt-get update && apt-get install -y --no-install-recommends bubblewrap util-linux",
    );
  });
});
