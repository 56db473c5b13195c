import { describe, expect, it } from "vitest";
import { toRemote } from "../../sdk/pi/src/paths.ts";
import { defaultSandboxName, readSettings } from "../../sdk/pi/src/settings.ts";

// The Pi extension's pure parts: where a path lands in the sandbox, and its settings.
describe("the Pi extension's paths", () => {
  const cwd = "/home/me/project";
  it("maps Pi's working directory to /workspace, and /workspace paths as they are", () => {
    expect(toRemote(cwd, cwd)).toBe("/workspace");
    expect(toRemote(cwd, "/home/me/project/src/a.ts")).toBe("/workspace/src/a.ts");
    expect(toRemote(cwd, "src/../b.ts")).toBe("/workspace/b.ts");
    expect(toRemote(cwd, "/workspace/c/d")).toBe("/workspace/c/d");
    expect(toRemote(cwd, "/workspace")).toBe("/workspace");
  });

  it("refuses anything outside the workspace, as a Pi tool error", () => {
    for (const p of [
      "/etc/passwd",
      "../sibling",
      "/home/me/project-other/x",
      "/workspace/../etc",
      "/workspacex",
    ]) {
      expect(() => toRemote(cwd, p), p).toThrow(/outside the sandbox workspace/);
    }
  });
});

describe("the Pi extension's settings", () => {
  it("names the missing variable", () => {
    expect(() => readSettings({}, "/p")).toThrow(/PI_SANDBOX_URL is not set/);
    expect(() => readSettings({ PI_SANDBOX_URL: "http://x" }, "/p")).toThrow(/PI_SANDBOX_TOKEN is not set/);
    expect(() =>
      readSettings(
        { PI_SANDBOX_URL: "http://x", PI_SANDBOX_TOKEN: "t", PI_SANDBOX_IDLE_TIMEOUT: "soon" },
        "/p",
      ),
    ).toThrow(/PI_SANDBOX_IDLE_TIMEOUT must be whole seconds/);
  });

  it("takes the name from the flag, else the environment, else the folder", () => {
    const env = { PI_SANDBOX_URL: "http://x", PI_SANDBOX_TOKEN: "t" };
    expect(readSettings(env, "/src/My Project!").name).toBe("pi-my-project");
    expect(readSettings({ ...env, PI_SANDBOX_NAME: "team-a" }, "/p").name).toBe("team-a");
    expect(readSettings({ ...env, PI_SANDBOX_NAME: "team-a" }, "/p", "flag-b").name).toBe("flag-b");
    expect(readSettings({ ...env, PI_SANDBOX_IDLE_TIMEOUT: "600" }, "/p").idleTimeoutSeconds).toBe(600);
    expect(defaultSandboxName(`/${"x".repeat(100)}`)).toHaveLength(63);
    expect(defaultSandboxName("/___")).toBe("pi-workspace");
  });
});
