import { describe, expect, it } from "vitest";
import { err, ok } from "../../shared/errors.ts";
import { parseToolArgs } from "../../shared/tools/definitions.ts";
import {
  describeNetwork,
  getNetwork,
  NO_NETWORK,
  networkSentence,
  runGetNetwork,
} from "../../shared/tools/network-tool.ts";

describe("get_network and the network the model is told", () => {
  it("no allow entry reads as no network, whatever deny or secrets say", () => {
    expect(describeNetwork(NO_NETWORK)).toEqual([
      "- There is no network access: every connection out of the sandbox is refused.",
    ]);
    expect(describeNetwork({ allow: [], deny: ["x.test"], secrets: ["K"] }).join("\n")).toMatch(/no network/);
    expect(networkSentence(NO_NETWORK)).toBe("There is no network.");
  });

  it("names the allow and deny lists and the placeholders, never a value, and says it cannot be changed", () => {
    const text = describeNetwork({
      allow: ["api.test:8443"],
      deny: ["10.0.0.0/8"],
      secrets: ["A", "B"],
    }).join("\n");
    expect(text).toContain("api.test:8443");
    expect(text).toContain("Refused even so: 10.0.0.0/8");
    expect(text).toContain("$A, $B hold placeholders");
    expect(text).toContain("Everything else is refused");
    expect(text).toContain("cannot change this policy");
    expect(networkSentence({ allow: ["api.test:8443"], deny: [], secrets: ["A"] })).toBe(
      "The network reaches only api.test:8443 (through a proxy); everything else is refused. " +
        "$A hold secret placeholders the proxy replaces for their hosts.",
    );
    // Unknown secrets (the MCP route does not name them): no secrets line at all.
    expect(describeNetwork({ allow: ["a.test"], deny: [] }).join("\n")).not.toContain("Secrets");
  });

  it("takes no arguments and offers no way to change the policy", async () => {
    expect(parseToolArgs(getNetwork, "{}").ok).toBe(true);
    expect(Object.keys(getNetwork.input.shape)).toEqual([]);
    const view = { allow: ["a.test"], deny: [], secrets: [] };
    const got = await runGetNetwork(async () => ok(view), new AbortController().signal);
    expect(got).toEqual(ok({ structured: view, text: getNetwork.render(view) }));
    expect(getNetwork.output.parse(view)).toEqual(view);
    const failed = await runGetNetwork(
      async () => err({ code: "sandbox_not_found", message: "gone" }),
      new AbortController().signal,
    );
    expect(failed.ok).toBe(false);
  });
});
